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
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import PretrainedConfig, TrainerCallback
from transformers.utils import logging

from .errors_avfmae import AVFMAEInputError, BadClipsError, ListFileError, ResumeError
from .video_processing_avfmae import outputs_to_collate


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

    Attributes of the wrapped dataset (`entries`, `set_epoch`, ...) are reachable through the wrapper. With
    `warn=False` the skipped clips are not logged here but by [`BadClipLog.record`] when the training loop takes
    their batch, so that every clip a run warns about is also counted and listed (a data loader's workers load
    batches ahead, which a run that stops never takes).
    """

    def __init__(self, dataset: torch.utils.data.Dataset, warn: bool = True):
        self.dataset = dataset
        self.warn = warn

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
            entry = entries[index]
            # a preprocessed clip's file is named by a hash: its place names the table row and the source video
            return f"{entry.video} ({entry.place})" if getattr(entry, "face_cropped", False) else entry.video
        return f"clip {index}"

    def __getitem__(self, index: int) -> dict:
        skipped = []
        for attempt in range(len(self)):
            candidate = (index + attempt) % len(self)
            try:
                item = self.dataset[candidate]
            except DECODE_ERRORS as error:
                skipped.append((candidate, self.clip_name(candidate), str(error)))
                if self.warn:
                    logger.warning(skipped_clip_message(*skipped[-1]))
                continue
            return {**item, BAD_CLIPS_KEY: skipped}
        raise BadClipsError(
            f"None of the {len(self)} clips could be read (first: {skipped[0][1]}: {skipped[0][2]}); check the list "
            "and the files it names."
        )


def skipped_clip_message(index: int, name: str, error: str) -> str:
    return f"Skipping clip {index} ({name}), it could not be read: {error}"


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
        """Note a batch's skipped clips (its `"bad_clips"`), each with a warning naming it."""
        for clip in bad_clips or ():
            logger.warning(skipped_clip_message(*clip))
            self._pending.append(tuple(clip))

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


def _flatten(values: Mapping, prefix: str = "") -> dict:
    """`{"video_config": {"depth": 2}}` as `{"video_config.depth": 2}`."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_fingerprint(config: PretrainedConfig, entries: Sequence, **batch_layout: int) -> dict:
    """What a checkpoint must match to be resumed: a digest of the model config (without its bookkeeping fields), the
    training clips (paths and labels, in order) and the batch layout (`per_device_train_batch_size`,
    `gradient_accumulation_steps`, `num_processes`, ...)."""
    config_values = {key: value for key, value in config.to_dict().items() if key not in _CONFIG_BOOKKEEPING}
    clips = [[entry.video, entry.audio, entry.label] for entry in entries]
    return {
        "model_config": _digest(config_values),
        "model_config_values": json.loads(json.dumps(_flatten(config_values), default=str)),  # to name differences
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
        before, now = saved.get("model_config_values"), fingerprint.get("model_config_values")
        if before is not None and now is not None:  # (fingerprints of earlier versions hold the digest only)
            changed = [f"{key}: {before.get(key)!r} then, {now.get(key)!r} now"
                       for key in sorted(set(before) | set(now)) if before.get(key) != now.get(key)]  # fmt: skip
            differences.append(
                f"the model config differs ({'; '.join(changed[:5])}{'; ...' if len(changed) > 5 else ''})"
            )
        else:
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


def check_launch(num_processes: int, distributed_type: object, use_cpu: bool = False) -> None:
    """Checks that the run is what the launcher set up: raise when it started more processes (`WORLD_SIZE`) than
    the run joined (without accelerators and without `--use_cpu`, each process of a `torchrun` or `accelerate
    launch` run would train alone on all the data and write the same output folder); warn when an FSDP or DeepSpeed
    config was launched but the run is plain data parallel (accelerate drops them on CPUs)."""
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if launched > num_processes:
        hint = "" if use_cpu else " On a machine without GPUs, pass --use_cpu to run them as one distributed run."
        raise RuntimeError(
            f"The launcher started {launched} processes (WORLD_SIZE={launched}) but this run joined "
            f"{num_processes}; every process would train alone on all the data.{hint}"
        )
    running = str(getattr(distributed_type, "value", distributed_type))
    for engine in ("FSDP", "DEEPSPEED"):
        if os.environ.get(f"ACCELERATE_USE_{engine}", "").lower() in ("1", "true") and running != engine:
            logger.warning(f"The launch config asks for {engine}, but the run is {running}: {engine} is not used.")


def steps_from_ratio(steps: float, max_steps: int) -> int:
    """A `--logging_steps` / `--eval_steps` / `--save_steps` value: below 1 it is a share of the run's steps
    (as the Trainer reads it), rounded up; otherwise a number of steps."""
    return max(math.ceil(steps * max_steps), 1) if steps < 1 else int(steps)


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


# --------------------------------------------------------------------------------------------------------------------
# `datasets` inputs
# --------------------------------------------------------------------------------------------------------------------


def _undecoded(dataset, columns: Sequence[str]):
    """`dataset` with its `Video` / `Audio` columns left undecoded (`{"path", "bytes"}`): reading paths then costs
    nothing, and each clip is decoded when its item is loaded."""
    import datasets

    for column in columns:
        feature = dataset.features.get(column)
        if isinstance(feature, (datasets.Video, datasets.Audio)) and feature.decode:
            dataset = dataset.cast_column(column, type(feature)(decode=False))
    return dataset


def _resolve(path, root: str | os.PathLike | None):
    """A relative path taken relative to `root`; anything else (absolute paths, `None`, no root) as it is."""
    if root is None or not isinstance(path, str) or os.path.isabs(path):
        return path
    return os.path.join(root, path)


def _media(value, root: str | os.PathLike | None = None):
    """A column value as something the processor reads: a path, bytes, an array, or `(array, sampling_rate)`."""
    if isinstance(value, Mapping):
        if value.get("path") and os.path.exists(_resolve(value["path"], root)):
            return value["path"]
        if value.get("bytes") is not None:
            return value["bytes"]
        if value.get("array") is not None:
            return (value["array"], value.get("sampling_rate"))
        return value.get("path")
    return value


def dataset_entries(
    dataset,
    *,
    video_column: str = "video",
    audio_column: str | None = "audio",
    label_column: str | None = "label",
    label2id: Mapping[str, int] | None = None,
    problem_type: str = "single_label_classification",
    num_labels: int | None = None,
    with_labels: bool = False,
    check_paths: bool = False,
    name: str = "dataset",
    root: str | os.PathLike | None = None,
) -> list:
    """The clips of a `datasets.Dataset` whose video (and audio) columns hold file paths, as
    [`~training_avfmae.ListEntry`] items for [`~training_avfmae.AVFMAEVideoDataset`] (so that validation, bad-clip
    skipping, seeding and resume fingerprints work as for list files). Only the path and label columns are read
    (`Video` / `Audio` features are cast to `decode=False`): every clip is decoded when its item is loaded.

    Labels: integers (e.g. a `ClassLabel` column), class names (with `label2id`; a `ClassLabel` column's names are
    used when `label2id` is not given) or, for regression, a number or a list of numbers. Relative paths are taken
    relative to `root` (none: the working directory), e.g. the folder of a downloaded Hub dataset
    ([`dataset_media_root`]). Problems are collected and raised together as one [`~errors_avfmae.ListFileError`],
    each with its row, as for list files. For datasets that hold the media themselves (bytes or arrays), use
    [`processed_dataset`].
    """
    import datasets

    from .training_avfmae import REGRESSION, ListEntry, check_list_entries

    columns = [column for column in (video_column, audio_column, label_column) if column is not None]
    missing = [column for column in columns if column not in dataset.column_names and column != audio_column]
    if missing:
        raise ValueError(f"{name} has no column {missing[0]!r}; its columns are {dataset.column_names}.")
    if audio_column is not None and audio_column not in dataset.column_names:
        audio_column = None  # each video's own audio stream
    label_feature = dataset.features.get(label_column) if label_column else None
    if label2id is None and isinstance(label_feature, datasets.ClassLabel):
        label2id = {label_name: index for index, label_name in enumerate(label_feature.names)}
    dataset = _undecoded(dataset, [video_column, *([audio_column] if audio_column else [])])
    table = dataset.select_columns([column for column in (video_column, audio_column, label_column) if column])
    problems, entries = [], []
    for row_index, row in enumerate(table):
        place = f"{name}[{row_index}]"
        video = _media(row[video_column], root)
        audio = _media(row[audio_column], root) if audio_column else None
        if not isinstance(video, str) or (audio is not None and not isinstance(audio, str)):
            problems.append(f"{place}: the media are not files on disk; use processed_dataset for such datasets.")
            continue
        video, audio = (_resolve(path, root) for path in (video, audio))
        label = row[label_column] if label_column else None
        if label is not None and problem_type == REGRESSION:
            try:
                label = tuple(float(value) for value in (label if isinstance(label, (list, tuple)) else [label]))
            except (TypeError, ValueError):
                problems.append(f"{place}: regression targets must be numbers, got {label!r}.")
                continue
        elif isinstance(label, str):
            if label2id is None or label not in label2id:
                known = f"; known names: {', '.join(label2id)}" if label2id else " (pass id2label/label2id)"
                problems.append(f"{place}: label {label!r} is not a known class name{known}.")
                continue
            label = int(label2id[label])
        elif label is not None:
            label = int(label)
        entries.append(ListEntry(video, audio, label, place=place))
    problems.extend(check_list_entries(entries, problem_type, num_labels, with_labels, check_paths))
    if not entries and not problems:
        problems.append(f"{name}: holds no clips.")
    if problems:
        raise ListFileError(name, problems)
    return entries


def is_saved_dataset(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    return os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, marker)) for marker in ("dataset_dict.json", "state.json")
    )


def load_dataset_split(name_or_path: str, split: str, config_name: str | None = None):
    """One split of a dataset: a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`, or anything
    `datasets.load_dataset` opens (a Hub id, a local loading script or data folder)."""
    import datasets

    if is_saved_dataset(name_or_path):
        loaded = datasets.load_from_disk(name_or_path)
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{name_or_path} has no split {split!r}; its splits are {sorted(loaded)}.")
            return loaded[split]
        return loaded
    return datasets.load_dataset(name_or_path, config_name, split=split)


def _has_relative_paths(dataset, columns: Sequence[str]) -> bool:
    for column in columns:
        for value in _undecoded(dataset, [column])[column]:
            path = value.get("path") if isinstance(value, Mapping) else value
            if isinstance(path, str) and not os.path.isabs(path):
                return True
    return False


def dataset_media_root(name_or_path: str, dataset=None, columns: Sequence[str] = ()) -> str | None:
    """The folder that relative media paths of a dataset are taken relative to: a local dataset's own folder (the
    folder given to `save_to_disk` / `load_dataset`, or the folder of a loading script), or for a Hub dataset id the
    local copy of the dataset repository (`huggingface_hub.snapshot_download(repo_type="dataset")`, which downloads
    the repository's files, media included, into the Hub cache). When `dataset` is given, a Hub repository is only
    downloaded if one of its `columns` holds a relative path (`None` is returned otherwise)."""
    if os.path.isdir(name_or_path):
        return name_or_path
    if os.path.isfile(name_or_path):
        return os.path.dirname(os.path.abspath(name_or_path))
    if dataset is not None and not _has_relative_paths(dataset, columns):
        return None
    from huggingface_hub import snapshot_download

    return snapshot_download(name_or_path, repo_type="dataset")


@dataclass
class DatasetArguments:
    """A `datasets` dataset to train on instead of list files (the training scripts' `--dataset_name` flags): one
    split each for training, validation and test, whose columns hold the media paths and labels."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Instead of list files: a `datasets` dataset (Hub id, or a folder saved with save_to_disk) whose "
            "video (and audio) columns hold file paths (relative ones: relative to the dataset's folder or "
            "repository); the --*_split flags name its splits."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    train_split: str = field(default="train", metadata={"help": "Training split of --dataset_name."})
    validation_split: str | None = field(default=None, metadata={"help": "Validation split of --dataset_name."})
    test_split: str | None = field(default=None, metadata={"help": "Test split of --dataset_name."})
    video_column: str = field(default="video", metadata={"help": "Column of --dataset_name with the video paths."})
    audio_column: str = field(
        default="audio", metadata={"help": "Column with audio paths (absent: each video's own audio)."}
    )
    label_column: str = field(default="label", metadata={"help": "Column with the labels (indices or names)."})

    def sources(self, *list_files: str | None) -> tuple[str | None, ...]:
        """Where the train / validation / test clips come from, in the order of `list_files`: those list files, or
        with `dataset_name` the dataset's splits (`train_split`, `validation_split`, `test_split`). Both at once is
        an error."""
        if self.dataset_name is None:
            return list_files
        if any(list_files):
            raise ValueError("Pass list files (--train_file, ...) or --dataset_name, not both.")
        return (self.train_split, self.validation_split, self.test_split)[: len(list_files)]

    def read_entries(
        self,
        source: str,
        *,
        label2id: Mapping[str, int] | None = None,
        problem_type: str = "single_label_classification",
        num_labels: int | None = None,
        with_labels: bool = False,
        check_paths: bool = True,
        read_labels: bool = True,
    ) -> list:
        """The checked clips of one source from [`sources`]: a list file ([`~training_avfmae.read_list_file`]), or
        a split of `dataset_name` ([`load_dataset_split`], then [`dataset_entries`] with relative paths under
        [`dataset_media_root`]). `read_labels=False` leaves the dataset's label column unread (pretraining; the
        labels of pretraining list files are dummies)."""
        from .training_avfmae import read_list_file

        checks = {"num_labels": num_labels, "with_labels": with_labels, "check_paths": check_paths}
        if self.dataset_name is None:
            return read_list_file(
                source, label2id=label2id, problem_type=problem_type, read_labels=read_labels, **checks
            )
        split = load_dataset_split(self.dataset_name, source, self.dataset_config_name)
        media_columns = [column for column in (self.video_column, self.audio_column) if column in split.column_names]
        return dataset_entries(
            split,
            video_column=self.video_column,
            audio_column=self.audio_column,
            label_column=self.label_column if read_labels else None,
            label2id=label2id,
            problem_type=problem_type,
            name=f"{self.dataset_name}[{source}]",
            root=dataset_media_root(self.dataset_name, split, media_columns),
            **checks,
        )


def processed_dataset(
    dataset,
    processor,
    *,
    video_column: str = "video",
    audio_column: str | None = "audio",
    label_column: str | None = "label",
    sampling_mode: str = "uniform",
    problem_type: str = "single_label_classification",
    use_audio: bool = True,
):
    """`dataset` with model inputs computed lazily, row by row as they are read (`dataset.with_transform`): each row's
    video (a path, bytes or frames) and audio (a path, bytes, or a decoded `{"array", "sampling_rate"}`; none: the
    video's own audio) go through `processor`. Items hold `pixel_values`, `audio_values` and `labels`, ready for
    [`~training_avfmae.AVFMAEDataCollator`]. For datasets of file paths, [`dataset_entries`] keeps the per-item
    seeding and bad-clip handling of the training datasets."""
    dataset = _undecoded(dataset, [column for column in (video_column, audio_column) if column])
    has_audio = use_audio and audio_column is not None and audio_column in dataset.column_names
    has_labels = label_column is not None and label_column in dataset.column_names

    def transform(batch: dict) -> dict:
        with outputs_to_collate():
            return process_rows(batch)

    def process_rows(batch: dict) -> dict:
        outputs = {
            "pixel_values": [],
            **({"audio_values": []} if use_audio else {}),
            **({"labels": []} if has_labels else {}),
        }
        for row_index, video in enumerate(batch[video_column]):
            audio = _media(batch[audio_column][row_index]) if has_audio else None
            sampling_rate = None
            if isinstance(audio, tuple):
                audio, sampling_rate = audio
            if use_audio:
                inputs = processor(
                    videos=_media(video), audio=audio, sampling_rate=sampling_rate, sampling_mode=sampling_mode,
                    return_tensors="pt",
                )  # fmt: skip
                outputs["audio_values"].append(inputs["audio_values"][0])
            else:
                inputs = processor.video_processor(_media(video), sampling_mode=sampling_mode, return_tensors="pt")
            outputs["pixel_values"].append(inputs["pixel_values"][0])
            if has_labels:
                label = batch[label_column][row_index]
                dtype = torch.float32 if problem_type == "regression" else torch.long
                outputs["labels"].append(torch.tensor(label, dtype=dtype))
        return outputs

    return dataset.with_transform(transform)


__all__ = [
    "BAD_CLIPS_KEY",
    "BadClipCallback",
    "BadClipLog",
    "BadClipSkippingDataset",
    "DECODE_ERRORS",
    "DEFAULT_MAX_BAD_CLIP_SHARE",
    "DatasetArguments",
    "FINGERPRINT_FILE",
    "FingerprintCallback",
    "check_fingerprint",
    "check_launch",
    "check_not_finished",
    "dataset_entries",
    "dataset_media_root",
    "is_saved_dataset",
    "load_dataset_split",
    "processed_dataset",
    "run_fingerprint",
    "save_fingerprint",
    "steps_from_ratio",
]
