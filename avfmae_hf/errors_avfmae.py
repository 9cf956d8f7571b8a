# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Typed errors for inputs the AVF-MAE++ processors and training helpers cannot use, one class per problem.

The processor errors derive from [`AVFMAEInputError`], itself a `ValueError`, and their message names the item (its
index in the batch and, when known, its path) and the problem in words, so that a batch with one bad item points at
it. The training errors ([`ListFileError`], [`BadClipsError`], [`ResumeError`]) name the list line, the clips or the
checkpoint at fault.
Errors raised by a decoder are chained (`raise ... from error`) but never stand alone as the explanation.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


# Number of the first item of the batch being processed in the caller's list (see `items_numbered_from`).
_FIRST_ITEM_NUMBER: ContextVar[int] = ContextVar("first_item_number", default=0)


@contextmanager
def items_numbered_from(first: int) -> Iterator[None]:
    """Within the block, messages number batch items from `first`: a caller that processes item `first` of its own
    list alone (a dataset, `avfmae predict`) gets messages with that item's number, not `item 0`."""
    token = _FIRST_ITEM_NUMBER.set(first)
    try:
        yield
    finally:
        _FIRST_ITEM_NUMBER.reset(token)


def describe_item(index: int | None = None, source: object = None) -> str:
    """Short name of a batch item for messages: `item 2 ('clips/a.mp4')`, `item 0 (bytes, 1234 bytes)`."""
    parts = []
    if index is not None:
        parts.append(f"item {index + _FIRST_ITEM_NUMBER.get()}")
    if isinstance(source, (str, os.PathLike)):
        parts.append(repr(os.fspath(source)))
    elif isinstance(source, (bytes, bytearray, memoryview)):
        parts.append(f"bytes, {len(source)} bytes")
    elif source is not None and hasattr(source, "read"):
        parts.append(f"file object {getattr(source, 'name', type(source).__name__)!r}")
    if not parts:
        return "input"
    if len(parts) == 1:
        return parts[0]
    return f"{parts[0]} ({parts[1]})"


class AVFMAEInputError(ValueError):
    """Base class: an input the processor cannot turn into model inputs.

    Attributes:
        problem (`str`): what is wrong, in words.
        index (`int`, *optional*): position of the item in the batch.
        source (`str`, *optional*): the item's path, when it has one.
    """

    def __init__(self, problem: str, index: int | None = None, source: object = None):
        self.problem = problem
        self.index = index
        # A path is kept; other sources (bytes, file objects) only as their description in the message.
        self.source = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        super().__init__(f"{describe_item(index, source)}: {problem}")

    def __reduce__(self):
        # Rebuild from the parts (exceptions travel between processes, e.g. out of DataLoader workers).
        return type(self), (self.problem, self.index, self.source)


class InputNotFoundError(AVFMAEInputError):
    """A path that does not exist."""


class EmptyInputError(AVFMAEInputError):
    """An empty file, empty bytes or a frame folder without images."""


class CorruptVideoError(AVFMAEInputError):
    """A file that is not a readable video (random bytes, a truncated container, an unknown format)."""


class DecodedDataMismatchError(CorruptVideoError):
    """A decoder returned data that disagrees with the container's own description (frame count, frame size,
    timestamps, audio length against the declared duration). Decoders can do this without raising, e.g. on a
    damaged file; this error is raised instead of passing such data on."""


class ZeroLengthVideoError(AVFMAEInputError):
    """A video with no frames."""


class InvalidFramesError(AVFMAEInputError):
    """Frames of an unusable type, shape, size or channel count."""


class MissingAudioError(AVFMAEInputError):
    """A video without an audio stream, with no separate audio given. Pass `missing_audio="silence"` to use silence
    instead."""


class UnusableAudioError(AVFMAEInputError):
    """Audio that cannot be used: empty, NaN or infinite values, a bad shape or sampling rate."""


class AudioTooShortError(AVFMAEInputError):
    """Audio shorter than one 25 ms fbank window (400 samples at 16 kHz)."""


class AudioAlignmentError(AVFMAEInputError):
    """The audio slice that matches the sampled frames is too short, and the audio file is too long to be used
    whole (the official fine-tuning loader's rule, architecture.md §11.3)."""


class ListFileError(ValueError):
    """A list of training clips with problems: bad syntax, unknown or out-of-range labels, regression targets of the
    wrong width, missing files. One error lists every problem, each with its place (`list.txt:3`), so that a list is
    fixed in one pass.

    Attributes:
        problems (`list[str]`): one line per problem, each starting with its place.
    """

    def __init__(self, source: object, problems: list[str]):
        self.problems = list(problems)
        self.source = os.fspath(source) if isinstance(source, (str, os.PathLike)) else str(source)
        count = f"{len(self.problems)} problem" + ("s" if len(self.problems) != 1 else "")
        super().__init__(f"{self.source}: {count}:\n" + "\n".join(f"  {problem}" for problem in self.problems))

    def __reduce__(self):
        return type(self), (self.source, self.problems)


class BadClipsError(RuntimeError):
    """More clips failed to decode during training than the run allows (or none could be read at all)."""


class ResumeError(ValueError):
    """A checkpoint that this run cannot continue from: another model config, dataset or batch layout than the
    run's, or a run that already reached its last step."""


__all__ = [
    "AVFMAEInputError",
    "AudioAlignmentError",
    "AudioTooShortError",
    "BadClipsError",
    "CorruptVideoError",
    "DecodedDataMismatchError",
    "EmptyInputError",
    "InputNotFoundError",
    "InvalidFramesError",
    "ListFileError",
    "MissingAudioError",
    "ResumeError",
    "UnusableAudioError",
    "ZeroLengthVideoError",
    "describe_item",
    "items_numbered_from",
]
