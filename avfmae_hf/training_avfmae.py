# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Training helpers for AVF-MAE++: list-file datasets, the collator, the official optimizer parameter groups
(layer-wise learning-rate decay, no weight decay on 1-D parameters), a `Trainer` with both, multi-view evaluation
and the evaluation metrics (UAR, WAR, weighted F1, CCC) shipped as `evaluate` modules inside the package.

The scripts in `training/` are thin layers over this module. It is not imported by the model, configuration or
processor modules, so checkpoints that carry their code do not need `evaluate`, `accelerate` or `datasets`.
"""

import argparse
import csv
import dataclasses
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, EvalPrediction, ProcessorMixin, Trainer, TrainerCallback
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.utils import logging

from .augmentation_avfmae import MixupCutmix, soft_target_cross_entropy
from .configuration_avfmae import AVFMAEConfig
from .data_avfmae import BAD_CLIPS_KEY, BadClipCallback, BadClipLog, is_saved_dataset
from .errors_avfmae import ListFileError, items_numbered_from
from .hub_avfmae import build_model_card, carrying_remote_code, write_pipeline_code
from .inference_avfmae import load_processor
from .labels_avfmae import parse_id2label, resolve_labels
from .modeling_avfmae import AVFMAEPreTrainedModel
from .preprocessing_avfmae import is_preprocessed_folder, read_preprocessed_folder
from .processing_avfmae import AVFMAEProcessor
from .video_processing_avfmae import SAMPLING_MODES, outputs_to_collate


logger = logging.get_logger(__name__)

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)

# The official recipes scale every learning rate by the total batch size over this reference batch (architecture.md
# §10.1-10.2: lr = base_lr * total_batch / 256).
REFERENCE_BATCH_SIZE = 256

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
CLASSIFICATION_METRICS = ("uar", "war", "weighted_f1")
REGRESSION_METRICS = ("ccc", "pcc", "mse")
MULTI_LABEL_METRICS = ("multilabel_f1",)


# --------------------------------------------------------------------------------------------------------------------
# List files (architecture.md §11.1), JSONL files and folder-per-class layouts
# --------------------------------------------------------------------------------------------------------------------

# Files in a folder-per-class layout that hold a clip's separate audio (paired with the clip of the same stem)
AUDIO_FILE_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".ogg")
# Files a folder-per-class layout takes as clips (beside frame folders); other files (notes, thumbnails) are not.
VIDEO_FILE_EXTENSIONS = (
    ".mp4",
    ".avi",
    ".mkv",
    ".mov",
    ".webm",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".3gp",
    ".ts",
)


@dataclass(frozen=True)
class ListEntry:
    """One line of a list file.

    Attributes:
        video (`str`): a video file or a folder of frames (one image per frame, in file-name order).
        audio (`str`, *optional*): the audio file; `None` reads the video's own audio stream.
        label (*optional*): a class index (single-label), a tuple of class indices (multi-label), a tuple of floats
            (regression) or `None` (unlabelled).
        place (`str`, *optional*): where the entry was read (`list.txt:3`), for messages; not compared.
        face_cropped (`bool`, defaults to `False`): the video is a face crop already (a preprocessed clip, see
            `preprocessing_avfmae`): the datasets do not detect faces in it again.
    """

    video: str
    audio: str | None = None
    label: int | tuple[float, ...] | None = None
    place: str | None = field(default=None, compare=False)
    face_cropped: bool = False


class _Problems(list):
    """The problems found while reading a list, each `"<place>: <problem>"`."""

    def add(self, place: str, problem: str) -> None:
        self.append(f"{place}: {problem}")


def _line_number(problem: str) -> int:
    """The line of a `"<list>:<line>: <problem>"` (0 for problems of the whole list), to report them in order."""
    match = re.match(r".*?:(\d+): ", problem)
    return int(match.group(1)) if match else 0


class _LabelsNotRead(Mapping):
    """The `label2id` of a list read without its labels: every name is a class, so that nothing about the labels is
    reported; the labels are dropped after reading."""

    def __getitem__(self, name: str) -> int:
        return 0

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0


def _parse_label(text: str, label2id: Mapping[str, int] | None, where: str, problems: _Problems) -> int | None:
    text = str(text).strip()
    if label2id is not None and text in label2id:
        return int(label2id[text])
    try:
        return int(text)
    except ValueError:
        known = f"; known names: {', '.join(label2id)}" if label2id else " (pass id2label/label2id to use names)"
        problems.add(where, f"label {text!r} is neither a class index nor a known class name{known}.")
        return None


def _parse_labels(texts: Sequence, label2id, where: str, problems: _Problems) -> tuple[int, ...] | None:
    """Every label of a multi-label video."""
    labels = [_parse_label(text, label2id, where, problems) for text in texts]
    return None if any(label is None for label in labels) else tuple(labels)


def _parse_values(texts: Sequence, where: str, problems: _Problems) -> tuple[float, ...] | None:
    try:
        return tuple(float(text) for text in texts)
    except (TypeError, ValueError):
        problems.add(where, f"regression targets must be numbers, got {list(texts)}.")
        return None


def _resolve(path: str, root: Path | None) -> str:
    return path if root is None or os.path.isabs(path) else os.fspath(root / path)


def read_list_file(
    path: str | os.PathLike,
    label2id: Mapping[str, int] | None = None,
    problem_type: str = SINGLE_LABEL,
    root: str | os.PathLike | None = None,
    *,
    num_labels: int | None = None,
    with_labels: bool = False,
    check_paths: bool = False,
    read_labels: bool = True,
) -> list[ListEntry]:
    """Read a list of videos (and labels) in one of the formats of architecture.md §11.1, a CSV or JSONL file, a
    folder per class, or a folder written by `avfmae preprocess`.

    Formats, detected from the path and the first line:
    - official fine-tuning lists, space separated, no header: `<frames_dir> <audio.wav> <label>` (regression:
      `<frames_dir> <audio.wav> <value> [<value> ...]`);
    - official pretraining lists: `<video.mp4> <label>` (the label is a dummy there), or just `<video.mp4>`;
    - CSV with a header row naming the columns: `video` (required), `audio` and `label` (optional); for several
      regression targets, `label` holds them separated by spaces;
    - JSONL (a `.jsonl` file, or lines starting with `{`): one object per line with `video` and optional `audio` and
      `label` (an index, a class name, or a list of numbers for regression);
    - a folder with one subfolder per class, named by the class: every video file or frame folder in it is a clip of
      that class, and an audio file (`.wav`, `.flac`, ...) with a clip's stem is that clip's audio. Labels are
      `label2id[name]`, or the index of the name among the sorted subfolder names without `label2id`.
    - multi-label classification: `<frames_dir> <audio.wav> <label> [<label> ...]` (every label of the video, as
      indices or names), a CSV whose `label` column holds them separated by spaces, or a JSONL list of them; the
      label is a tuple of class indices.
    - a folder written by `avfmae preprocess` (it holds `preprocessing.json`): its face-crop clips, with the labels
      it stored; the entries are `face_cropped`, so faces are not detected again.

    Labels are class indices or, with `label2id`, class names. Empty lines and lines starting with `#` are skipped.
    Relative paths are taken relative to `root` (default: the list file's folder); paths in the space-separated
    formats cannot contain spaces (as in the official code).

    Every problem is collected before anything is raised: one [`~errors_avfmae.ListFileError`] lists them all, each
    with its line. Beyond the syntax, `num_labels` checks class indices against `[0, num_labels)` and the width of
    regression targets, `with_labels` requires a label on every line, and `check_paths` that every video and audio
    path exists, so that a training run finds all of them before its first step. `read_labels=False` reads the
    videos only (pretraining): labels of any kind, names included, are left unread and the entries have none.
    """
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"Unknown problem_type {problem_type!r}; choose one of {PROBLEM_TYPES}.")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such list file or folder.")
    problems = _Problems()
    if not read_labels:
        label2id, problem_type, num_labels, with_labels = _LabelsNotRead(), SINGLE_LABEL, None, False
    if is_preprocessed_folder(path):
        entries = read_preprocessed_folder(path)
    elif is_saved_dataset(path):
        raise ListFileError(path, [f"{path}: a `datasets` folder saved with save_to_disk, not a list; pass it as "
                                   "--dataset_name (a split with --train_split / --validation_split)."])  # fmt: skip
    elif path.is_dir():
        entries = _read_class_folders(path, label2id, problem_type, problems)
    else:
        root = path.parent if root is None else Path(root)
        lines = path.read_text().splitlines()
        content = [(number, line) for number, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")]
        if not content:
            raise ListFileError(path, [f"{path}: lists no videos."])
        if path.suffix.lower() == ".jsonl" or content[0][1].lstrip().startswith("{"):
            entries = _read_jsonl(path, content, root, label2id, problem_type, problems)
        elif "," in content[0][1] or content[0][1].strip() == "video":  # (official space-separated lists are .csv)
            entries = _read_csv(path, root, label2id, problem_type, problems)
        else:
            entries = _read_space_separated(path, content, root, label2id, problem_type, problems)
    if not entries and not problems:
        problems.add(os.fspath(path), "lists no videos.")
    problems.extend(check_list_entries(entries, problem_type, num_labels, with_labels, check_paths))
    if problems:
        raise ListFileError(path, sorted(problems, key=_line_number))  # in the order of the file's lines
    return entries if read_labels else [dataclasses.replace(entry, label=None) for entry in entries]


def check_list_entries(
    entries: Sequence[ListEntry],
    problem_type: str = SINGLE_LABEL,
    num_labels: int | None = None,
    with_labels: bool = False,
    check_paths: bool = False,
) -> list[str]:
    """The problems of read entries, one `"<place>: <problem>"` each (see [`read_list_file`]); empty when none."""
    problems = _Problems()
    for index, entry in enumerate(entries):
        place = entry.place or f"entry {index}"
        if entry.label is None:
            if with_labels:
                problems.add(place, "has no label.")
        elif problem_type == REGRESSION:
            if num_labels is not None and len(entry.label) != num_labels:
                problems.add(place, f"{len(entry.label)} regression targets, the model predicts {num_labels}.")
        elif problem_type == MULTI_LABEL:
            outside = [label for label in entry.label if num_labels is not None and not 0 <= label < num_labels]
            if outside:
                problems.add(
                    place, f"labels {outside} are out of range for {num_labels} classes (0-{num_labels - 1})."
                )
        elif num_labels is not None and not 0 <= entry.label < num_labels:
            problems.add(place, f"label {entry.label} is out of range for {num_labels} classes (0-{num_labels - 1}).")
        if check_paths:
            for kind, source in (("video", entry.video), ("audio", entry.audio)):
                if source is not None and not os.path.exists(source):
                    problems.add(place, f"{kind} {source!r} does not exist.")
    return problems


def _read_space_separated(path, content, root, label2id, problem_type, problems) -> list[ListEntry]:
    entries = []
    for number, line in content:
        where = f"{path}:{number}"
        fields = line.split()
        label = None
        if problem_type == REGRESSION:
            if len(fields) < 3:
                problems.add(where, f"expected `<frames_dir> <audio> <value> [<value> ...]`, got {line!r}.")
                continue
            video, audio, label = fields[0], fields[1], _parse_values(fields[2:], where, problems)
        elif problem_type == MULTI_LABEL:
            if len(fields) < 3:
                problems.add(where, f"expected `<frames_dir> <audio> <label> [<label> ...]`, got {line!r}.")
                continue
            video, audio = fields[0], fields[1]
            label = _parse_labels(fields[2:], label2id, where, problems)
        elif len(fields) == 3:
            video, audio, label = fields[0], fields[1], _parse_label(fields[2], label2id, where, problems)
        elif len(fields) == 2:
            video, audio, label = fields[0], None, _parse_label(fields[1], label2id, where, problems)
        elif len(fields) == 1:
            video, audio = fields[0], None
        else:
            problems.add(
                where,
                f"expected `<frames_dir> <audio> <label>`, `<video> <label>` or `<video>`, got {len(fields)} "
                f"fields in {line!r} (paths cannot contain spaces in this format; use a CSV file).",
            )
            continue
        if len(fields) > 1 and label is None:
            continue
        audio = None if audio is None else _resolve(audio, root)
        entries.append(ListEntry(_resolve(video, root), audio, label, place=where))
    return entries


def _entry_from_fields(video, audio, label, root, label2id, problem_type, where, problems) -> ListEntry | None:
    if not isinstance(video, str) or not video.strip():
        problems.add(where, "has no `video`.")
        return None
    if label is None or (isinstance(label, str) and not label.strip()):
        label = None
    elif problem_type == REGRESSION:
        values = label.split() if isinstance(label, str) else label if isinstance(label, list) else [label]
        label = _parse_values(values, where, problems)
        if label is None:
            return None
    elif problem_type == MULTI_LABEL:
        texts = label.split() if isinstance(label, str) else label if isinstance(label, list) else [label]
        label = _parse_labels(texts, label2id, where, problems)
        if label is None:
            return None
    else:
        label = _parse_label(label, label2id, where, problems)
        if label is None:
            return None
    audio = audio.strip() if isinstance(audio, str) else None
    return ListEntry(_resolve(video.strip(), root), _resolve(audio, root) if audio else None, label, place=where)


def _read_csv(path, root, label2id, problem_type, problems) -> list[ListEntry]:
    with open(path, newline="") as handle:
        numbered = [
            (number, line) for number, line in enumerate(handle, 1) if line.strip() and not line.startswith("#")
        ]
    reader = csv.DictReader(line for _, line in numbered)
    if not reader.fieldnames or "video" not in reader.fieldnames:
        problems.add(
            f"{path}:{numbered[0][0]}",
            "a CSV list needs a header row with a `video` column (and optional audio, label).",
        )
        return []
    entries = []
    for row in reader:
        where = f"{path}:{numbered[reader.line_num - 1][0]}"  # the row's last line in the file
        if None in row:  # csv's key for fields beyond the header's
            problems.add(where, f"has {len(reader.fieldnames) + len(row[None])} fields; the header names "
                                f"{len(reader.fieldnames)} ({', '.join(reader.fieldnames)}).")  # fmt: skip
            continue
        if any(isinstance(value, str) and "\n" in value for value in row.values()):
            problems.add(where, "a quoted field runs over several lines (a quote is not closed).")
            continue
        entry = _entry_from_fields(
            row.get("video"), row.get("audio"), row.get("label"), root, label2id, problem_type, where, problems
        )
        if entry is not None:
            entries.append(entry)
    return entries


def _read_jsonl(path, content, root, label2id, problem_type, problems) -> list[ListEntry]:
    entries = []
    for number, line in content:
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            problems.add(where, f"not a JSON object ({error.msg}).")
            continue
        if not isinstance(record, dict):
            problems.add(where, f"expected a JSON object with a `video` key, got {type(record).__name__}.")
            continue
        entry = _entry_from_fields(
            record.get("video"),
            record.get("audio"),
            record.get("label"),
            root,
            label2id,
            problem_type,
            where,
            problems,
        )
        if entry is not None:
            entries.append(entry)
    return entries


def class_folder_names(path: str | os.PathLike) -> list[str]:
    """The class names of a folder-per-class layout: its subfolders, sorted (the label order without `label2id`)."""
    return sorted(child.name for child in Path(path).iterdir() if child.is_dir() and not child.name.startswith("."))


def _read_class_folders(path: Path, label2id, problem_type, problems) -> list[ListEntry]:
    if problem_type != SINGLE_LABEL:
        raise ValueError(f"{path}: a folder per class holds one class per clip, not {problem_type} targets.")
    names = class_folder_names(path)
    if not names:
        raise ListFileError(path, [f"{path}: no class subfolders (expected <folder>/<class name>/<clip>)."])
    entries, ignored = [], []
    for class_index, name in enumerate(names):
        where = f"{path / name}"
        if label2id is not None and name not in label2id:
            problems.add(
                where, f"class folder {name!r} is not a known class name; known names: {', '.join(label2id)}."
            )
            continue
        label = int(label2id[name]) if label2id is not None else class_index
        children = sorted(child for child in (path / name).iterdir() if not child.name.startswith("."))
        audio = {child.stem: child for child in children if child.suffix.lower() in AUDIO_FILE_EXTENSIONS}
        for child in children:
            if child.suffix.lower() in AUDIO_FILE_EXTENSIONS:
                continue
            if not (child.is_dir() or child.suffix.lower() in VIDEO_FILE_EXTENSIONS):
                ignored.append(child)
                continue
            paired = audio.get(child.stem)
            entries.append(
                ListEntry(
                    os.fspath(child), None if paired is None else os.fspath(paired), label, place=os.fspath(child)
                )
            )
    if ignored:
        logger.warning(
            f"{path}: ignored {len(ignored)} file(s) that are neither videos ({', '.join(VIDEO_FILE_EXTENSIONS)}), "
            f"frame folders nor audio, e.g. {os.fspath(ignored[0])!r}."
        )
    return entries


# --------------------------------------------------------------------------------------------------------------------
# Datasets and collator
# --------------------------------------------------------------------------------------------------------------------


class AVFMAEVideoDataset(torch.utils.data.Dataset):
    """Videos from a list file, run through [`AVFMAEProcessor`] one item at a time.

    Args:
        entries: a list file (see [`read_list_file`]) or a sequence of [`ListEntry`].
        processor ([`AVFMAEProcessor`]): turns each video (and its audio) into model inputs.
        sampling_mode (`str`, defaults to `"uniform"`): the processor's frame sampling: `"train"` (a random window,
            the official training sampling), `"uniform"` (deterministic, whole clip) or `"test"` (the official test
            segments).
        seed (`int`, *optional*): makes the random parts (the `"train"` window, the audio gain) a function of
            `(seed, epoch, index)`, so that an item is the same whichever worker loads it and a resumed run sees the
            same data; call [`set_epoch`] every epoch ([`AVFMAETrainer`] does). Without a seed, each item draws its
            randomness from torch's global generator (seeded per `DataLoader` worker by torch, and by `set_seed`).
        test_segments (`Sequence[int]`, *optional*): the segments of the `"test"` mode; defaults to all
            `processor.video_processor.num_test_segments`. With more than one, an item holds every view:
            `pixel_values` `(num_views, T, 3, H, W)` and `audio_values` `(num_views, 1, time, mel)`, which
            [`AVFMAETrainer`] averages (softmax mean, the official protocol).
        audio_gain_jitter (`bool`, *optional*): the official random audio gain (Beta(10, 10) + 0.5); defaults to on
            in the `"train"` mode (an augmentation there) and off otherwise (the official code also applies it at test
            time, see the feature extractor).
        label2id (`Mapping[str, int]`, *optional*), problem_type (`str`): how labels are read (see
            [`read_list_file`]).
        with_labels (`bool`, defaults to `True`): add `labels` to each item (every entry must have one).
        use_audio (`bool`, defaults to `True`): `False` leaves out `audio_values` (video-only models).
        num_labels (`int`, *optional*): the number of classes, needed for multi-label targets (multi-hot `labels`);
            defaults to the size of `label2id`.
        augmentation (*optional*): per-clip training augmentations, e.g. [`FineTuningAugmentation`] (RandAugment on
            the resized uint8 frames, then after normalisation random resized crop, flip and random erasing, in the
            official order) or [`PretrainingAugmentation`] (random temporal start, multi-scale crop). Its draws come
            from the item's random source (see `seed`). Not with the `"test"` mode.

    Each item is a dict of tensors: `pixel_values` `(T, 3, H, W)`, `audio_values` `(1, time, mel)` and `labels`
    (a long scalar for classification, float `(num_targets,)` for regression).
    """

    def __init__(
        self,
        entries: str | os.PathLike | Sequence[ListEntry],
        processor: AVFMAEProcessor,
        sampling_mode: str = "uniform",
        seed: int | None = None,
        test_segments: Sequence[int] | None = None,
        audio_gain_jitter: bool | None = None,
        label2id: Mapping[str, int] | None = None,
        problem_type: str = SINGLE_LABEL,
        with_labels: bool = True,
        use_audio: bool = True,
        augmentation=None,
        num_labels: int | None = None,
    ):
        if sampling_mode not in SAMPLING_MODES:
            raise ValueError(f"Unknown sampling_mode {sampling_mode!r}; choose one of {SAMPLING_MODES}.")
        if isinstance(entries, (str, os.PathLike)):
            entries = read_list_file(entries, label2id=label2id, problem_type=problem_type)
        self.entries = list(entries)
        if with_labels:
            unlabelled = [entry.video for entry in self.entries if entry.label is None]
            if unlabelled:
                raise ValueError(f"{len(unlabelled)} entries have no label, e.g. {unlabelled[0]}.")
        self.processor = processor
        self.sampling_mode = sampling_mode
        self.seed = seed
        self.epoch = 0
        num_segments = processor.video_processor.num_test_segments
        self.test_segments = tuple(range(num_segments) if test_segments is None else test_segments)
        if sampling_mode == "test" and not self.test_segments:
            raise ValueError("The test mode needs at least one test segment.")
        self.audio_gain_jitter = sampling_mode == "train" if audio_gain_jitter is None else audio_gain_jitter
        self.problem_type = problem_type
        self.with_labels = with_labels
        self.use_audio = use_audio
        if augmentation is not None and sampling_mode == "test":
            raise ValueError("Training augmentations do not apply to the 'test' sampling mode (evaluation views).")
        self.augmentation = augmentation
        self.num_labels = num_labels if num_labels is not None else len(label2id) if label2id else None
        if problem_type == MULTI_LABEL and with_labels:
            if self.num_labels is None:
                raise ValueError("Multi-label targets need num_labels (or label2id) to build multi-hot labels.")
            for entry in self.entries:
                bad = [label for label in entry.label if not 0 <= label < self.num_labels]
                if bad:
                    raise ValueError(f"{entry.video}: labels {bad} are not class indices below {self.num_labels}.")

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws the next items use (with a `seed`)."""
        self.epoch = int(epoch)

    def random_state(self, index: int) -> np.random.RandomState | None:
        """The random source of item `index` (see `seed`); `None` when nothing is random (deterministic sampling, no
        audio gain jitter), so that such datasets leave torch's global generator alone."""
        if self.sampling_mode != "train" and not self.audio_gain_jitter and self.augmentation is None:
            return None
        if self.seed is None:
            return np.random.RandomState(int(torch.randint(0, 2**31 - 1, ()).item()))
        return np.random.RandomState(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(4))

    def augmentation_hooks(self, generator) -> dict:
        """The processor hooks of `augmentation` for one item: its frame sampler (when it replaces the sampling
        mode) and its transform of the uint8 frames, both drawing from the item's `generator`."""
        if self.augmentation is None:
            return {}
        video_processor = self.processor.video_processor
        size = (video_processor.size["height"], video_processor.size["width"])
        augmentation = self.augmentation

        def frame_sampler(total_frames: int):
            sampling = augmentation.sample_frames(
                total_frames, video_processor.num_frames, video_processor.frame_stride, generator
            )
            if sampling is None:
                options = video_processor.resolve_options(sampling_mode=self.sampling_mode)
                return video_processor.sample(total_frames, 0, generator, options)[0]
            return sampling

        return {
            "frame_sampler": frame_sampler,
            "frame_transform": lambda frames: augmentation.transform_frames(frames, size, generator),
        }

    def _process(self, entry: ListEntry, sampling_mode: str, test_segment: int, generator) -> dict[str, torch.Tensor]:
        # `None` keeps the processor's own choice
        do_face_crop = False if entry.face_cropped else None
        if not self.use_audio:
            outputs = self.processor.video_processor(
                entry.video,
                do_face_crop=do_face_crop,
                sampling_mode=sampling_mode,
                test_segment=test_segment,
                generator=generator,
                return_tensors="pt",
                **self.augmentation_hooks(generator),
            )
            return {"pixel_values": outputs["pixel_values"][0]}
        outputs = self.processor(
            videos=entry.video,
            audio=entry.audio,
            do_face_crop=do_face_crop,
            sampling_mode=sampling_mode,
            test_segment=test_segment,
            generator=generator,
            audio_gain_jitter=self.audio_gain_jitter,
            return_tensors="pt",
            **self.augmentation_hooks(generator),
        )
        return {"pixel_values": outputs["pixel_values"][0], "audio_values": outputs["audio_values"][0]}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        with outputs_to_collate(), items_numbered_from(index):
            return self._item(index)

    def _item(self, index: int) -> dict[str, torch.Tensor]:
        entry = self.entries[index]
        generator = self.random_state(index)
        if self.sampling_mode == "test":
            views = [self._process(entry, "test", segment, generator) for segment in self.test_segments]
            item = views[0] if len(views) == 1 else {key: torch.stack([v[key] for v in views]) for key in views[0]}
        else:
            item = self._process(entry, self.sampling_mode, 0, generator)
            if self.augmentation is not None:
                item["pixel_values"] = self.augmentation.transform_clip(item["pixel_values"], generator)
        if self.with_labels:
            if self.problem_type == REGRESSION:
                item["labels"] = torch.tensor(entry.label, dtype=torch.float32)
            elif self.problem_type == MULTI_LABEL:
                item["labels"] = torch.zeros(self.num_labels, dtype=torch.float32)
                item["labels"][list(entry.label)] = 1.0
            else:
                item["labels"] = torch.tensor(entry.label, dtype=torch.long)
        return item


class AVFMAEPretrainingDataset(AVFMAEVideoDataset):
    """Raw videos for pretraining: [`AVFMAEVideoDataset`] without labels, `"train"` sampling by default.

    Items hold `pixel_values` and `audio_values` only: [`AVFMAEForPreTraining`] draws its masks itself. The official
    pretraining augmentations are `augmentation=PretrainingAugmentation()` (random temporal start and multi-scale
    crop) with `audio_gain_jitter=True`. The official pretraining lists (`<video.mp4> <dummy label>`) and
    one-path-per-line lists are read as they are.
    """

    def __init__(
        self,
        entries: str | os.PathLike | Sequence[ListEntry],
        processor: AVFMAEProcessor,
        sampling_mode: str = "train",
        seed: int | None = None,
        audio_gain_jitter: bool | None = None,
        augmentation=None,
    ):
        super().__init__(
            entries,
            processor,
            sampling_mode=sampling_mode,
            seed=seed,
            audio_gain_jitter=audio_gain_jitter,
            with_labels=False,
            augmentation=augmentation,
        )


@dataclass
class AVFMAEDataCollator:
    """Stacks dataset items into a batch: `pixel_values`, `audio_values` and `labels` when present (`label` is
    renamed `labels`). Numpy arrays and numbers are converted to tensors; other keys are dropped, except the
    `"bad_clips"` of a [`~data_avfmae.BadClipSkippingDataset`], which are listed for the whole batch."""

    model_input_names: tuple[str, ...] = ("pixel_values", "audio_values")

    def __call__(self, features: Sequence[Mapping[str, object]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("Cannot collate an empty batch.")
        # torch's default_collate stacks into shared memory inside a DataLoader worker, so a batch reaches the main
        # process without another copy (a base-size batch of 8 is ~40 MB of pixels)
        stack = torch.utils.data.default_collate
        batch = {}
        for name in self.model_input_names:
            if name in features[0] and features[0][name] is not None:
                batch[name] = stack([torch.as_tensor(feature[name]) for feature in features])
        label_key = "labels" if "labels" in features[0] else "label" if "label" in features[0] else None
        if label_key is not None and features[0][label_key] is not None:
            batch["labels"] = stack([torch.as_tensor(feature[label_key]) for feature in features])
        if BAD_CLIPS_KEY in features[0]:  # items of a BadClipSkippingDataset: the clips skipped for this batch
            batch[BAD_CLIPS_KEY] = [clip for feature in features for clip in feature[BAD_CLIPS_KEY]]
        return batch


# --------------------------------------------------------------------------------------------------------------------
# Optimizer parameter groups (architecture.md §10.1-10.2)
# --------------------------------------------------------------------------------------------------------------------

_EMBEDDINGS = re.compile(r"(?:^|\.)(?:video|audio)_embeddings\.")
_ENCODER_LAYER = re.compile(r"(?:^|\.)(?:video|audio)_encoder\.layers\.(\d+)\.")
_FUSION_LAYER = re.compile(r"(?:^|\.)fusion\.layers\.(\d+)\.")


@dataclass(frozen=True)
class ParameterSetting:
    """How the official recipe trains one parameter: its layer id, its learning-rate scale and whether weight decay
    applies to it."""

    layer_id: int
    lr_scale: float
    weight_decay: bool


def layer_id(name: str, num_encoder_layers: int, num_fusion_layers: int) -> int:
    """The official fine-tuning layer id of a parameter (the official `get_num_layer_for_avit`, on our names).

    With `L = num_encoder_layers` (the deeper tower) and `F = num_fusion_layers`:
    - patch embeddings of either tower: 0;
    - layer `k` of the video or audio encoder: `k + 1` (the two towers share ids);
    - IAV-CLM fusion layer `k`: `L + 1 + k`;
    - everything else (region tokens, encoder layer norms, the non-layer parts of IAV-CLM, the learned layer weights,
      `fc_norm`, the classifier, decoders): `L + F + 1`, the top id.
    """
    if _EMBEDDINGS.search(name):
        return 0
    match = _ENCODER_LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    match = _FUSION_LAYER.search(name)
    if match:
        return num_encoder_layers + 1 + int(match.group(1))
    return num_encoder_layers + num_fusion_layers + 1


def _model_depths(model: nn.Module) -> tuple[int, int]:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "video_config"):
        raise ValueError("Layer-wise learning-rate decay needs an AVF-MAE++ model (one with an AVFMAEConfig).")
    if not config.use_audio:
        return config.video_config.num_hidden_layers, 0
    depth = max(config.video_config.num_hidden_layers, config.audio_config.num_hidden_layers)
    return depth, config.fusion_num_hidden_layers


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def parameter_settings(model: nn.Module, layer_decay: float | None = None) -> dict[str, ParameterSetting]:
    """The official optimizer setting of every trainable parameter of `model`, by name.

    Learning-rate scale (fine-tuning, architecture.md §10.2): `layer_decay ** (L + F + 1 - layer_id)` (see
    [`layer_id`]), so with the official `F = 2` fusion layers the patch embeddings train at `layer_decay ** (L + 3)`,
    encoder layer `k` at `layer_decay ** (L + 2 - k)`, fusion layer `k` at `layer_decay ** (2 - k)` and everything
    else at 1. `layer_decay` `None` or 1 gives scale 1 everywhere (pretraining).

    Weight decay: none on 1-D parameters (norms, biases, the learned layer weights, the PReLU slope) and on any
    parameter whose name ends in `.bias`; every other parameter decays (region tokens included, as in the official
    code, whose skip list does not name them with their module prefix).
    """
    layer_decay = 1.0 if layer_decay is None else float(layer_decay)
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}.")
    unwrapped = _unwrap(model)
    num_encoder_layers, num_fusion_layers = _model_depths(unwrapped) if layer_decay < 1.0 else (0, 0)
    top = num_encoder_layers + num_fusion_layers + 1
    settings = {}
    for name, parameter in unwrapped.named_parameters():
        if not parameter.requires_grad:
            continue
        identifier = layer_id(name, num_encoder_layers, num_fusion_layers) if layer_decay < 1.0 else top
        decays = parameter.ndim > 1 and not name.endswith(".bias")
        settings[name] = ParameterSetting(identifier, layer_decay ** (top - identifier), decays)
    return settings


def layer_decay_parameter_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float = 0.05,
    layer_decay: float | None = None,
) -> list[dict]:
    """Optimizer parameter groups of the official recipe (see [`parameter_settings`]): one group per (layer id,
    weight decay or not), with `lr = learning_rate * lr_scale` and the group's `weight_decay` (0 for 1-D parameters
    and biases). Groups also carry `lr_scale` and `layer_id`, and come top layer first, so that the first group (the
    one `Trainer` logs) trains at `learning_rate` itself. Learning-rate schedulers built on the optimizer (`LambdaLR`,
    transformers' schedules) scale every group's own learning rate, keeping the ratios."""
    named = dict(_unwrap(model).named_parameters())
    groups: dict[tuple[int, bool], dict] = {}
    for name, setting in parameter_settings(model, layer_decay).items():
        key = (setting.layer_id, setting.weight_decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "weight_decay": weight_decay if setting.weight_decay else 0.0,
                "lr": learning_rate * setting.lr_scale,
                "lr_scale": setting.lr_scale,
                "layer_id": setting.layer_id,
            }
        groups[key]["params"].append(named[name])
    return [groups[key] for key in sorted(groups, key=lambda key: (-key[0], not key[1]))]


def scale_learning_rate(base_learning_rate: float, total_batch_size: int) -> float:
    """The official learning-rate rule: `base_learning_rate * total_batch_size / 256`."""
    return base_learning_rate * total_batch_size / REFERENCE_BATCH_SIZE


# --------------------------------------------------------------------------------------------------------------------
# Multi-view evaluation and metrics (architecture.md §10.3)
# --------------------------------------------------------------------------------------------------------------------


def combine_view_logits(logits: torch.Tensor, problem_type: str | None = SINGLE_LABEL) -> torch.Tensor:
    """Combine the predictions of several views of each video, `(B, views, num_labels)` -> `(B, num_labels)`.

    Single-label: the log of the mean softmax (the official protocol averages the views' probabilities; the log keeps
    the output usable as logits: its argmax and its cross-entropy are those of the mean probability). Multi-label:
    the logit of the mean sigmoid. Regression: the mean.
    """
    logits = logits.float()
    if problem_type == REGRESSION:
        return logits.mean(dim=1)
    if problem_type == MULTI_LABEL:
        probabilities = logits.sigmoid().mean(dim=1).clamp(1e-7, 1 - 1e-7)
        return probabilities.log() - (-probabilities).log1p()
    return logits.softmax(dim=-1).mean(dim=1).clamp_min(torch.finfo(torch.float32).tiny).log()


def load_metric(name: str, **kwargs):
    """An evaluation metric shipped with the package (`uar`, `war`, `weighted_f1`, `ccc`), through
    `evaluate.load(<path>)`: offline, no Hub access."""
    import evaluate

    path = METRICS_DIR / name
    if not (path / f"{name}.py").is_file():
        available = sorted(folder.name for folder in METRICS_DIR.iterdir() if (folder / f"{folder.name}.py").is_file())
        raise ValueError(f"Unknown metric {name!r}; the package ships {available}.")
    return evaluate.load(os.fspath(path), **kwargs)


def build_compute_metrics(
    problem_type: str | None = SINGLE_LABEL, metric_names: Sequence[str] | None = None
) -> Callable[[EvalPrediction], dict[str, float]]:
    """A `compute_metrics` function for `Trainer`.

    Classification (single-label): UAR, WAR and weighted F1 (plus macro F1) on the argmax of the logits.
    Multi-label: micro and macro F1 and subset accuracy of the decisions `sigmoid(logit) > 0.5`.
    Regression: CCC, PCC and MSE (per target and their mean). Predictions given as a tuple (logits first, as the
    model's outputs list them) are handled.
    """
    problem_type = problem_type or SINGLE_LABEL
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"Unknown problem_type {problem_type!r}; choose one of {PROBLEM_TYPES}.")
    if metric_names is None:
        metric_names = {REGRESSION: REGRESSION_METRICS, MULTI_LABEL: MULTI_LABEL_METRICS}.get(
            problem_type, CLASSIFICATION_METRICS
        )
    metrics = [load_metric(name) for name in metric_names]

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        logits = np.asarray(logits)
        references = np.asarray(prediction.label_ids)
        if problem_type == REGRESSION:
            predictions = logits.reshape(len(logits), -1)
            references = references.reshape(len(references), -1)
            if predictions.shape[1] == 1:
                predictions, references = predictions[:, 0], references[:, 0]
        elif problem_type == MULTI_LABEL:
            predictions = (logits > 0).astype(np.int64)  # sigmoid(logit) > 0.5
            references = references.round().astype(np.int64)
        else:
            predictions = logits.argmax(axis=-1)
        results = {}
        for metric in metrics:
            results.update(metric.compute(predictions=predictions.tolist(), references=references.tolist()))
        return results

    return compute_metrics


def keep_logits(logits, labels) -> torch.Tensor:
    """`preprocess_logits_for_metrics` for `Trainer`: keep only the logits of the model's outputs."""
    return logits[0] if isinstance(logits, (tuple, list)) else logits


# --------------------------------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------------------------------


class DatasetEpochCallback(TrainerCallback):
    """Tells the training dataset which epoch starts, so that seeded datasets draw fresh augmentations every epoch
    and the same ones on resume. (accelerate's data loader forwards `set_epoch` to the dataset in single-process runs
    but not in distributed ones, where it stops at the sharded batch sampler's seedable sampler.)"""

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        dataset = getattr(train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(math.floor(state.epoch + 1e-6) if state.epoch else 0)


class AVFMAETrainer(Trainer):
    """`Trainer` with the official AVF-MAE++ fine-tuning optimizer and evaluation.

    - The optimizer (the class and betas of `args`, e.g. AdamW) gets the official parameter groups
      ([`layer_decay_parameter_groups`]): layer-wise learning-rate decay `layer_decay` (official fine-tuning: 0.75)
      and no weight decay on 1-D parameters and biases.
    - Batches whose `pixel_values` hold several views per video, `(B, views, T, 3, H, W)` (a
      [`AVFMAEVideoDataset`] in the `"test"` mode with several segments), are predicted view by view and combined
      with [`combine_view_logits`].
    - Datasets with a `set_epoch` method are told the epoch ([`DatasetEpochCallback`]).
    - With `mixup`, training batches are mixed (video only, the official Mixup/CutMix) and trained against the
      mixed soft targets with [`soft_target_cross_entropy`]; evaluation batches are not mixed.
    - Saved folders (checkpoints and the final model) are Hub-ready: they carry the code files, the complete
      `auto_map`, the processor and a model card ([`~hub_avfmae.build_model_card`] with `model_card_kwargs`), and
      load with `trust_remote_code=True` where the package is not installed.
    - With a `bad_clip_log`, the clips a [`~data_avfmae.BadClipSkippingDataset`] skipped are recorded and merged
      across processes after every step; past its limit the step is saved and training stops.

    Args:
        layer_decay (`float`, *optional*): layer-wise learning-rate decay; `None` or 1 turns it off.
        mixup ([`MixupCutmix`], *optional*): batch mixing of training batches (single-label classification). Its
            draws are a function of `(args.seed, process index, global step, micro-batch)`, so a resumed run mixes
            as an uninterrupted one.
        bad_clip_log ([`~data_avfmae.BadClipLog`], *optional*): where skipped clips are counted.
        All other arguments are `Trainer`'s.
    """

    def __init__(
        self,
        *args,
        layer_decay: float | None = None,
        mixup: MixupCutmix | None = None,
        bad_clip_log: BadClipLog | None = None,
        **kwargs,
    ):
        self.layer_decay = layer_decay
        self.mixup = mixup
        self.bad_clip_log = bad_clip_log
        # keyword arguments of `build_model_card` for the cards of saved folders (e.g. `base_model`, `notes`)
        self.model_card_kwargs = {}
        self._held_processor = None
        self._mixed_micro_batches = (-1, 0)  # (global step, micro-batches mixed in it)
        super().__init__(*args, **kwargs)
        if mixup is not None:
            # the mixed loss is a plain batch mean: Trainer divides it by the accumulation steps
            self.loss_is_scaled_for_ga = False
            if self.label_smoother is not None:
                raise ValueError(
                    "With mixup the label smoothing is part of the mixed targets (MixupCutmix.label_smoothing); "
                    "leave TrainingArguments.label_smoothing_factor at 0."
                )
        self.add_callback(DatasetEpochCallback())
        if bad_clip_log is not None:
            self.add_callback(BadClipCallback(bad_clip_log))

    def _prepare_inputs(self, inputs):
        # the clips a BadClipSkippingDataset skipped travel with the batch to here, never to the model
        bad_clips = inputs.pop(BAD_CLIPS_KEY, None)
        if self.bad_clip_log is not None:
            self.bad_clip_log.record(bad_clips)
        return super()._prepare_inputs(inputs)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        # Under FSDP with sharded state dicts (the shipped FSDP2 config) the Trainer saves only the engine's shards
        # (with the optimizer, in checkpoints). The full weights are gathered here, every process taking part, and
        # saved as a Hub-ready folder beside those shards, under names FSDP does not use.
        if self.is_fsdp_enabled and "FULL_STATE_DICT" not in str(self.accelerator.state.fsdp_plugin.state_dict_type):
            self._save(output_dir, state_dict=self.accelerator.get_state_dict(self.model))
        super().save_model(output_dir, _internal_call=_internal_call)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # Checkpoints and the final folder load with `trust_remote_code=True` where the package is not installed:
        # code files, the complete auto_map, the processor and a model card (see `hub_avfmae`).
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if not isinstance(model, AVFMAEPreTrainedModel):
            return super()._save(output_dir, state_dict=state_dict)
        processor = self.processing_class if isinstance(self.processing_class, AVFMAEProcessor) else None
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if _is_fsdp2_sharded(model):  # FSDP2 swapped the model's class: saved from the gathered full weights
            save_hub_ready(
                model,
                output_dir,
                processor=processor,
                state_dict=state_dict,
                is_main_process=self.args.should_save,
                **self.model_card_kwargs,
            )
            if self.args.should_save:
                torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))
            return
        with carrying_remote_code(model, processor):
            super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            write_pipeline_code(model, processor, output_dir)
            card = build_model_card(model, with_processor=processor is not None, **self.model_card_kwargs)
            card.save(os.path.join(output_dir, "README.md"))

    def get_train_dataloader(self):
        if self.mixup is None or self.args.dataloader_drop_last:
            return super().get_train_dataloader()
        # an odd last batch cannot be mixed: the training loader drops it, as the official one does (evaluation
        # loaders keep every clip)
        self.args.dataloader_drop_last = True
        try:
            return super().get_train_dataloader()
        finally:
            self.args.dataloader_drop_last = False

    def mixing_generator(self) -> np.random.Generator:
        """The random source of the next training batch's mixing."""
        step, count = self._mixed_micro_batches
        count = count + 1 if step == self.state.global_step else 0
        self._mixed_micro_batches = (self.state.global_step, count)
        keys = [self.args.seed, self.args.process_index, self.state.global_step, count]
        return np.random.default_rng(np.random.SeedSequence(keys))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.mixup is None or not model.training or "labels" not in inputs:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        pixel_values, targets = self.mixup(inputs["pixel_values"].clone(), labels, self.mixing_generator())
        outputs = model(**{**inputs, "pixel_values": pixel_values})
        loss = soft_target_cross_entropy(outputs.logits, targets.to(outputs.logits.device))
        return (loss, outputs) if return_outputs else loss

    def train(self, *args, **kwargs):
        # `Trainer.train` first aligns the model config's special tokens with `processing_class.tokenizer` whenever
        # the processing class is a `ProcessorMixin`, which fails for a processor without a tokenizer (this one holds
        # a video processor and a feature extractor). The processor is held back during that step only and is back
        # in place when the training loop starts, so checkpoints still save it.
        if isinstance(self.processing_class, ProcessorMixin) and not hasattr(self.processing_class, "tokenizer"):
            self._held_processor, self.processing_class = self.processing_class, None
        try:
            return super().train(*args, **kwargs)
        finally:
            self._restore_processor()

    def _inner_training_loop(self, *args, **kwargs):
        self._restore_processor()
        return super()._inner_training_loop(*args, **kwargs)

    def _restore_processor(self) -> None:
        if self._held_processor is not None:
            self.processing_class, self._held_processor = self._held_processor, None

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            groups = layer_decay_parameter_groups(
                opt_model, self.args.learning_rate, self.args.weight_decay, self.layer_decay
            )
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            optimizer_kwargs = {
                key: value for key, value in optimizer_kwargs.items() if key not in ("params", "model")
            }
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        pixel_values = inputs.get("pixel_values")
        if pixel_values is None or pixel_values.ndim != 6:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels")
        batch_size, num_views = inputs["pixel_values"].shape[:2]
        # (B, views, ...) -> (B * views, ...): every view is one sample for the model
        flat = {name: inputs[name].flatten(0, 1) for name in ("pixel_values", "audio_values") if name in inputs}
        config = _unwrap(model).config
        with torch.no_grad(), self.compute_loss_context_manager():
            view_logits = model(**flat).logits
            logits = combine_view_logits(view_logits.view(batch_size, num_views, -1), config.problem_type)
            loss = None
            if labels is not None:
                loss = _unwrap(model).loss_function(labels, logits, config).detach()
        if prediction_loss_only:
            return loss, None, None
        return loss, logits, labels


# --------------------------------------------------------------------------------------------------------------------
# Scripts
# --------------------------------------------------------------------------------------------------------------------


def parse_arguments(parser, args: Sequence[str] | None = None) -> tuple:
    """Parse a script's arguments into its dataclasses (`parser` is a `transformers.HfArgumentParser`).

    `script.py [recipe.json] [--flag value ...]`: a JSON file given first supplies values for any fields (its keys are
    the flag names), and flags after it override them, so a paper recipe can be run with local paths:
    `run_finetuning.py training/finetune_mafw_huge.json --train_file train.txt --output_dir out`.
    """
    args = list(sys.argv[1:] if args is None else args)
    if args and args[0].endswith(".json"):
        values = json.loads(Path(args[0]).read_text())
        # flags taken out by `remove_arguments` keep their action (for its default) but no option string
        known = {
            action.dest
            for action in parser._actions
            if any(option in parser._option_string_actions for option in action.option_strings)
        }
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{args[0]} sets unknown arguments: {', '.join(unknown)}.")
        parser.set_defaults(**values)
        args = args[1:]
    return parser.parse_args_into_dataclasses(args=args, look_for_args_file=False)


def remove_arguments(parser, names: Iterable[str]) -> None:
    """Take flags out of an `argparse` parser (e.g. `TrainingArguments` fields a script does not honour): `--help`
    does not offer them, passing one is an error ("unrecognized arguments"), and so is setting one in a JSON recipe
    ([`parse_arguments`]); their dataclass fields keep their defaults."""
    names = set(names)
    for action in parser._actions:
        if action.dest in names:
            action.help = argparse.SUPPRESS
            for option in action.option_strings:
                parser._option_string_actions.pop(option, None)


def _is_fsdp2_sharded(model: nn.Module) -> bool:
    if not torch.distributed.is_available():
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _unsharded_model(model: AVFMAEPreTrainedModel, state_dict: Mapping[str, torch.Tensor] | None):
    """A model of the class that FSDP2 swapped for a sharded subclass, holding the gathered full `state_dict`
    (assigned to a model built on the meta device, so no second copy of the weights is made)."""
    if not state_dict:
        raise ValueError(
            "A model sharded by FSDP2 is saved from its full state dict, gathered from every process "
            "(accelerator.get_state_dict(model)); none was given."
        )
    from torch.distributed.fsdp import FSDPModule

    model_class = next(
        cls
        for cls in type(model).__mro__
        if issubclass(cls, AVFMAEPreTrainedModel) and not issubclass(cls, FSDPModule)
    )
    with torch.device("meta"):
        unsharded = model_class(model.config)
    unsharded.load_state_dict(state_dict, assign=True)
    return unsharded


def save_hub_ready(
    model: AVFMAEPreTrainedModel,
    folder: str | os.PathLike,
    *,
    processor: AVFMAEProcessor | None = None,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    is_main_process: bool = True,
    **card_kwargs,
) -> None:
    """Save a trained model as a Hub-ready folder: weights (from `state_dict` when given, e.g. gathered from
    sharded processes), config with the complete `auto_map`, the code files, the processor and a model card
    ([`~hub_avfmae.build_model_card`] with `card_kwargs`). Call it in every process with `is_main_process`; only the
    main one writes.

    A model sharded by FSDP2 (`fully_shard`, as accelerate's FSDP2 prepares it) needs `state_dict`, the full
    weights gathered from every process (`accelerator.get_state_dict`): they are saved as a model of the model's
    own class, built without a second copy of the weights."""
    if _is_fsdp2_sharded(model):
        if not is_main_process:
            return
        model, state_dict = _unsharded_model(model, state_dict), None
    with carrying_remote_code(model, processor):
        model.save_pretrained(folder, state_dict=state_dict, is_main_process=is_main_process)
        if is_main_process and processor is not None:
            processor.save_pretrained(folder)
            write_pipeline_code(model, processor, folder)
    if is_main_process:
        card = build_model_card(model, with_processor=processor is not None, **card_kwargs)
        card.save(os.path.join(folder, "README.md"))


def finetuning_labels(
    dataset: str | None = None, id2label: str | None = None, model_name_or_path: str | None = None
) -> dict[int, str]:
    """The `id2label` of a fine-tuning run (see [`~labels_avfmae.resolve_labels`]): from `dataset` (its official
    label order), from `id2label` (class names in the order of the list files' integer labels, comma-separated or
    JSON), or, when neither is given, the labels of the classification model at `model_name_or_path`."""
    existing = None
    if model_name_or_path is not None and dataset is None and id2label is None:
        config = AutoConfig.from_pretrained(model_name_or_path)
        if any("Classification" in name for name in config.architectures or []):
            existing = config.id2label
    return resolve_labels(
        id2label=parse_id2label(id2label) if id2label else None, dataset=dataset, existing_labels=existing
    )


def check_model_source(model_name_or_path: str | None, size: str | None, config_name: str | None) -> None:
    """A training run starts from exactly one of a saved model, a released size or a config."""
    if sum(source is not None for source in (model_name_or_path, size, config_name)) != 1:
        raise ValueError("Pass exactly one of --model_name_or_path, --size and --config_name.")
    for flag, name in (("--model_name_or_path", model_name_or_path), ("--config_name", config_name)):
        # a Hub id is `name` or `owner/name`; anything else that does not exist is a mistyped local path, which
        # transformers would report as a failed download
        if name is not None and _is_local_path(name) and not os.path.exists(os.path.expanduser(name)):
            raise FileNotFoundError(f"{flag} {name}: no such file or folder.")


def _is_local_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def load_model_and_processor(
    model_class: type[AVFMAEPreTrainedModel],
    *,
    model_name_or_path: str | None = None,
    size: str | None = None,
    config_name: str | None = None,
    processor_name: str | None = None,
    do_face_crop: bool | None = None,
    config_overrides: Mapping | None = None,
    **from_pretrained_kwargs,
) -> tuple[AVFMAEPreTrainedModel, AVFMAEProcessor]:
    """The model a training script starts from and its processor.

    The model comes from exactly one of: a saved folder or Hub id (`model_name_or_path`, loaded with
    `model_class.from_pretrained`), a released size (`size`, new weights) or a config (`config_name`, new weights);
    `config_overrides` are config fields set on top (labels, `problem_type`, `drop_path_rate`, ...). The processor is
    the one at `processor_name`, else the one saved with the model, else the config's default; `do_face_crop`
    overrides its face-crop setting when given.
    """
    check_model_source(model_name_or_path, size, config_name)
    overrides = dict(config_overrides or {})
    if model_name_or_path is not None:
        config = AutoConfig.from_pretrained(model_name_or_path, **overrides)
        model = model_class.from_pretrained(model_name_or_path, config=config, **from_pretrained_kwargs)
    else:
        if size is not None:
            config = AVFMAEConfig.from_size(size, **overrides)
        else:
            config = AVFMAEConfig.from_pretrained(config_name, **overrides)
        model = model_class(config)
    if processor_name is not None:
        processor = AVFMAEProcessor.from_pretrained(processor_name)
    elif model_name_or_path is not None:
        processor = load_processor(model_name_or_path, model.config)
    else:
        processor = AVFMAEProcessor.for_model_config(model.config)
    if do_face_crop is not None:
        processor.video_processor.do_face_crop = do_face_crop
    return model, processor


# --------------------------------------------------------------------------------------------------------------------
# Pretraining
# --------------------------------------------------------------------------------------------------------------------


class TrainingProgress:
    """The optimizer steps a training loop has completed, saved with its checkpoints (it has the `state_dict` /
    `load_state_dict` pair that `Accelerator.register_for_checkpointing` needs) and turned back into a position in
    the data on resume."""

    def __init__(self, completed_steps: int = 0):
        self.completed_steps = completed_steps

    def state_dict(self) -> dict[str, int]:
        return {"completed_steps": self.completed_steps}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.completed_steps = int(state["completed_steps"])

    def position(self, update_steps_per_epoch: int, gradient_accumulation_steps: int = 1) -> tuple[int, int]:
        """`(epoch, batches_to_skip)`: the epoch to continue and how many of its batches were already used."""
        epoch, steps_into_epoch = divmod(self.completed_steps, update_steps_per_epoch)
        return epoch, steps_into_epoch * gradient_accumulation_steps


def mask_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU `torch.Generator` seeded from `seed` and integer `keys` (e.g. process index, epoch, step), for the
    masks that [`AVFMAEForPreTraining`] draws: a run that resumes at a given step draws the same masks as a run that
    never stopped, without saving any generator state."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


__all__ = [
    "AVFMAEDataCollator",
    "AVFMAEPretrainingDataset",
    "AVFMAETrainer",
    "AVFMAEVideoDataset",
    "CLASSIFICATION_METRICS",
    "DatasetEpochCallback",
    "ListEntry",
    "check_list_entries",
    "class_folder_names",
    "METRICS_DIR",
    "MULTI_LABEL_METRICS",
    "ParameterSetting",
    "REGRESSION_METRICS",
    "build_compute_metrics",
    "check_model_source",
    "finetuning_labels",
    "load_model_and_processor",
    "combine_view_logits",
    "keep_logits",
    "layer_decay_parameter_groups",
    "layer_id",
    "load_metric",
    "mask_generator",
    "parameter_settings",
    "parse_arguments",
    "read_list_file",
    "remove_arguments",
    "save_hub_ready",
    "scale_learning_rate",
    "TrainingProgress",
]
