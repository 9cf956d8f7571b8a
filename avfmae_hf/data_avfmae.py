# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Keeping long training runs alive and safe to resume: clips that fail to decode are skipped and counted (up to a
share of the dataset), and a checkpoint records which model config, dataset and batch layout it belongs to.

Used by the training scripts next to `training_avfmae`; like it, not imported by the model, configuration or
processor modules.
"""

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from transformers import PretrainedConfig, TrainerCallback
from transformers.utils import logging

from .errors_avfmae import AVFMAEInputError, BadClipsError, ResumeError


logger = logging.get_logger(__name__)

# The batch key under which a collated batch carries the clips skipped while it was loaded; the training loops remove
# it before the model sees the batch.
BAD_CLIPS_KEY = "bad_clips"

# What a clip that cannot be decoded raises: the processors' typed input errors, and I/O errors of the file system.
DECODE_ERRORS = (AVFMAEInputError, OSError)

DEFAULT_MAX_BAD_CLIP_SHARE = 0.05

FINGERPRINT_FILE = "run_fingerprint.json"

# Config fields that say where a config was saved or loaded, not what model it describes
_CONFIG_BOOKKEEPING = ("_name_or_path", "transformers_version", "architectures", "auto_map", "dtype", "torch_dtype")


# --------------------------------------------------------------------------------------------------------------------
# Bad clips
# --------------------------------------------------------------------------------------------------------------------


class BadClipSkippingDataset(torch.utils.data.Dataset):
    """Wraps a training dataset so that a clip that fails to decode does not end the run.

    A failing clip is skipped with a warning naming it, and the next clip of the dataset (wrapping around) is loaded
    in its place, so batches keep their size and every process keeps the same number of steps. Each item carries
    the clips skipped for it under `"bad_clips"` (a list of `(index, clip, error)`); [`AVFMAEDataCollator`] gathers
    them for the batch and the training loop hands them to a [`BadClipLog`]. When every clip of the dataset fails,
    [`~errors_avfmae.BadClipsError`] is raised.

    Attributes of the wrapped dataset (`entries`, `set_epoch`, ...) are reachable through the wrapper.
    """

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        if name == "dataset":  # not set yet (e.g. while unpickling in a worker): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def clip_name(self, index: int) -> str:
        entries = getattr(self.dataset, "entries", None)
        if entries is not None and hasattr(entries[index], "video"):
            return entries[index].video
        return f"clip {index}"

    def __getitem__(self, index: int) -> dict:
        skipped = []
        for attempt in range(len(self)):
            candidate = (index + attempt) % len(self)
            try:
                item = self.dataset[candidate]
            except DECODE_ERRORS as error:
                name = self.clip_name(candidate)
                logger.warning(f"Skipping clip {candidate} ({name}), it could not be read: {error}")
                skipped.append((candidate, name, str(error)))
                continue
            return {**item, BAD_CLIPS_KEY: skipped}
        raise BadClipsError(
            f"None of the {len(self)} clips could be read (first: {skipped[0][1]}: {skipped[0][2]}); check the list "
            "and the files it names."
        )


def _gather_across_processes(values: list) -> list:
    """Every process's `values`, concatenated (the values themselves in a single-process run)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        world_size = torch.distributed.get_world_size()
        if world_size > 1:
            gathered = [None] * world_size
            torch.distributed.all_gather_object(gathered, values)
            return [value for part in gathered for value in part]
    return list(values)


class BadClipLog:
    """The clips of a training dataset that failed to decode, across all processes, and the run's limit on them.

    Args:
        num_clips (`int`): the size of the training dataset.
        max_share (`float`, defaults to 0.05): the run stops once more than `max_share * num_clips` distinct clips
            have failed.

    Call [`record`] with each batch's `"bad_clips"` and [`synchronize`] once per optimizer step in every process
    (it is a collective operation): all processes then agree on the failures and on [`exceeded`].
    """

    def __init__(self, num_clips: int, max_share: float = DEFAULT_MAX_BAD_CLIP_SHARE):
        if not 0.0 <= max_share <= 1.0:
            raise ValueError(f"The maximum share of bad clips must be in [0, 1], got {max_share}.")
        self.num_clips = num_clips
        self.max_share = max_share
        self.failures: dict[int, tuple[str, str]] = {}
        self._pending: list[tuple[int, str, str]] = []

    def record(self, bad_clips: Sequence[Sequence] | None) -> None:
        self._pending.extend(tuple(clip) for clip in bad_clips or ())

    def synchronize(self) -> int:
        """Merge the failures recorded by every process since the last call; returns how many clips are new."""
        pending, self._pending = self._pending, []
        new = 0
        for index, name, error in _gather_across_processes(pending):
            if int(index) not in self.failures:
                new += 1
            self.failures[int(index)] = (name, error)
        return new

    @property
    def max_bad_clips(self) -> int:
        return math.floor(self.max_share * self.num_clips)

    @property
    def exceeded(self) -> bool:
        return len(self.failures) > self.max_bad_clips

    def summary(self) -> dict:
        return {
            "num_bad_clips": len(self.failures),
            "num_clips": self.num_clips,
            "max_bad_clip_share": self.max_share,
            "bad_clips": [
                {"index": index, "clip": name, "error": error}
                for index, (name, error) in sorted(self.failures.items())
            ],
        }

    def save(self, output_dir: str | os.PathLike) -> Path:
        """Write [`summary`] to `<output_dir>/bad_clips.json` and log the skipped clips."""
        path = Path(output_dir) / "bad_clips.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.summary(), indent=2) + "\n")
        if self.failures:
            names = ", ".join(name for name, _ in self.failures.values())
            logger.warning(f"{len(self.failures)} of {self.num_clips} clips were skipped (listed in {path}): {names}")
        return path

    def error(self, checkpoint: str | os.PathLike | None = None) -> BadClipsError:
        saved = f" The training state was saved to {checkpoint}." if checkpoint else ""
        names = ", ".join(name for name, _ in list(self.failures.values())[:5])
        more = ", ..." if len(self.failures) > 5 else ""
        return BadClipsError(
            f"{len(self.failures)} of {self.num_clips} clips could not be read, more than the allowed share "
            f"{self.max_share:g} ({self.max_bad_clips} clips): {names}{more}.{saved} Fix or remove them (or raise "
            "--max_bad_clip_share) and resume."
        )


class BadClipCallback(TrainerCallback):
    """Merges the failed clips of all processes after every `Trainer` step; past the limit, the step's checkpoint is
    saved and training stops (the script then raises [`BadClipLog.error`])."""

    def __init__(self, log: BadClipLog):
        self.log = log

    def on_step_end(self, args, state, control, **kwargs):
        self.log.synchronize()
        if self.log.exceeded:
            control.should_save = True
            control.should_training_stop = True
        return control


# --------------------------------------------------------------------------------------------------------------------
# Resume fingerprints
# --------------------------------------------------------------------------------------------------------------------


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def run_fingerprint(config: PretrainedConfig, entries: Sequence, **batch_layout: int) -> dict:
    """What a checkpoint must match to be resumed: a digest of the model config (without its bookkeeping fields), the
    training clips (paths and labels, in order) and the batch layout (`per_device_train_batch_size`,
    `gradient_accumulation_steps`, `num_processes`, ...)."""
    config_values = {key: value for key, value in config.to_dict().items() if key not in _CONFIG_BOOKKEEPING}
    clips = [[entry.video, entry.audio, entry.label] for entry in entries]
    return {
        "model_config": _digest(config_values),
        "dataset": {"num_clips": len(clips), "sha256": _digest(clips)},
        "batch_layout": dict(sorted(batch_layout.items())),
    }


def save_fingerprint(folder: str | os.PathLike, fingerprint: Mapping) -> None:
    Path(folder, FINGERPRINT_FILE).write_text(json.dumps(fingerprint, indent=2) + "\n")


def check_fingerprint(folder: str | os.PathLike, fingerprint: Mapping) -> None:
    """Raise [`~errors_avfmae.ResumeError`] naming every part (model config, dataset, batch layout) in which the
    checkpoint `folder` differs from this run. A checkpoint without a fingerprint is resumed with a warning."""
    path = Path(folder, FINGERPRINT_FILE)
    if not path.is_file():
        logger.warning(f"{folder} has no {FINGERPRINT_FILE}; resuming without checking that it belongs to this run.")
        return
    saved = json.loads(path.read_text())
    differences = []
    if saved.get("model_config") != fingerprint["model_config"]:
        differences.append("the model config differs")
    if saved.get("dataset") != fingerprint["dataset"]:
        before, now = saved.get("dataset", {}).get("num_clips"), fingerprint["dataset"]["num_clips"]
        differences.append(f"the training clips differ ({before} clips then, {now} now, or other paths/labels)")
    if saved.get("batch_layout") != fingerprint["batch_layout"]:
        differences.append(
            f"the batch layout differs ({saved.get('batch_layout')} then, {fingerprint['batch_layout']} now)"
        )
    if differences:
        raise ResumeError(
            f"Cannot resume from {folder}: {'; '.join(differences)}. Resume with the settings of that run, or start "
            "a new one in another --output_dir."
        )


class FingerprintCallback(TrainerCallback):
    """Writes the run's fingerprint (see [`run_fingerprint`]) into every `checkpoint-*` folder the `Trainer` saves."""

    def __init__(self, fingerprint: Mapping):
        self.fingerprint = fingerprint

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir, f"checkpoint-{state.global_step}")
        if args.should_save and folder.is_dir():
            save_fingerprint(folder, self.fingerprint)
        return control


def check_not_finished(completed_steps: int, max_steps: int, checkpoint: str | os.PathLike, allowed: bool) -> bool:
    """Whether a resumed run has steps left. When the checkpoint has reached `max_steps`, raise
    [`~errors_avfmae.ResumeError`] unless `allowed` (then only warn and return `False`)."""
    if max_steps <= 0 or completed_steps < max_steps:
        return True
    message = f"{checkpoint} has already completed {completed_steps} of --max_steps {max_steps}: nothing to train."
    if not allowed:
        raise ResumeError(f"{message} Raise --max_steps to train further, or pass --allow_finished_resume.")
    logger.warning(f"{message} Writing the final output only (--allow_finished_resume).")
    return False


__all__ = [
    "BAD_CLIPS_KEY",
    "BadClipCallback",
    "BadClipLog",
    "BadClipSkippingDataset",
    "DECODE_ERRORS",
    "DEFAULT_MAX_BAD_CLIP_SHARE",
    "FINGERPRINT_FILE",
    "FingerprintCallback",
    "check_fingerprint",
    "check_not_finished",
    "run_fingerprint",
    "save_fingerprint",
]
