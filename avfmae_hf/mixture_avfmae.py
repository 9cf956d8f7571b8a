# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Stage 2 of the three-stage recipe ("hybrid intermediate fine-tuning"): supervised training on a mixture of
labelled affective datasets aligned into one vocabulary ([`LabelMapping`]), with per-source sampling weights and a
guard against training on any clip of a target dataset's test split.

A mixture file is JSON (relative paths are relative to the file):

```json
{
  "vocabulary": ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"],
  "sources": [
    {"train_file": "dfew/train.txt", "label_mapping": "label_mappings/dfew.json", "weight": 2.0},
    {"train_file": "crema-d/train.txt", "label_mapping": "label_mappings/crema-d.json", "weight": 1.0}
  ],
  "exclude_test_files": ["mafw/split01/test.txt"]
}
```

- `vocabulary` (optional, default `BASIC_EMOTIONS`): the classes of the stage-2 head, in index order.
- `sources`: each source's list file (any format of [`read_list_file`], labels as indices or source names) and
  label mapping; `weight` (default 1) is its share of each epoch: an epoch draws `sum(len(source))` clips (or
  `num_samples`), each from source `i` with probability `weight_i / sum(weights)` and uniformly within it.
- `exclude_test_files`: test lists of the target datasets; training refuses to start when a training clip is one of
  theirs, by path or by content (SHA-256 of the video file, or of a frame folder's files), listing them all.
"""

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .label_mapping_avfmae import BASIC_EMOTIONS, LabelMapping, LabelMappingError
from .training_avfmae import ListEntry, read_list_file


_MIXTURE_KEYS = {"vocabulary", "sources", "exclude_test_files"}
_SOURCE_KEYS = {"train_file", "label_mapping", "weight", "name"}


class _AnyLabel(dict):
    """Reads any label as 0: the guard needs the paths of a test list, whatever its label names."""

    def __contains__(self, key) -> bool:
        return True

    def __getitem__(self, key) -> int:
        return 0


class TargetTestClipError(ValueError):
    """Training clips that belong to a target dataset's test split."""

    def __init__(self, overlaps: Sequence[tuple[str, str, str]]):
        self.overlaps = list(overlaps)
        lines = [f"  {train} is {test} of the test split ({how})" for train, test, how in self.overlaps]
        super().__init__(
            f"{len(self.overlaps)} training clip(s) are in a target test split; remove them from the training lists:\n"
            + "\n".join(lines)
        )

    def __reduce__(self):
        return type(self), (self.overlaps,)


def clip_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 of a clip's content: the bytes of a video file, or of a frame folder's files in name order (names
    included, so a re-ordered folder differs)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(child for child in path.iterdir() if child.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.name.encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def find_test_clips(
    train_entries: Sequence[ListEntry], test_entries: Sequence[ListEntry], by_content: bool = True
) -> list[tuple[str, str, str]]:
    """The training clips that are test clips: `(training video, test video, "same path" | "same content")`."""
    test_paths = {os.path.realpath(entry.video): entry.video for entry in test_entries}
    overlaps, remaining = [], []
    for entry in train_entries:
        real = os.path.realpath(entry.video)
        if real in test_paths:
            overlaps.append((entry.video, test_paths[real], "same path"))
        else:
            remaining.append(entry)
    if by_content and remaining:
        test_hashes = {}
        for entry in tqdm(test_entries, desc="Hashing test clips", leave=False):
            if os.path.exists(entry.video):
                test_hashes.setdefault(clip_fingerprint(entry.video), entry.video)
        for entry in tqdm(remaining, desc="Hashing training clips", leave=False):
            if os.path.exists(entry.video):
                match = test_hashes.get(clip_fingerprint(entry.video))
                if match is not None:
                    overlaps.append((entry.video, match, "same content"))
    return overlaps


def check_no_test_clips(
    train_entries: Sequence[ListEntry], test_entries: Sequence[ListEntry], by_content: bool = True
) -> None:
    """Raise [`TargetTestClipError`] listing every training clip found in the test split (see
    [`find_test_clips`])."""
    overlaps = find_test_clips(train_entries, test_entries, by_content)
    if overlaps:
        raise TargetTestClipError(overlaps)


@dataclass
class MixtureSource:
    """One source of a mixture: its name, entries with vocabulary labels, sampling weight and what was dropped."""

    name: str
    entries: list[ListEntry]
    weight: float = 1.0
    dropped: int = 0


@dataclass
class Mixture:
    """A parsed mixture file: the vocabulary, the sources and the entries of the test splits to keep out."""

    vocabulary: tuple[str, ...]
    sources: list[MixtureSource]
    excluded_test_entries: list[ListEntry] = field(default_factory=list)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.vocabulary))

    @property
    def entries(self) -> list[ListEntry]:
        return [entry for source in self.sources for entry in source.entries]

    def check_test_splits(self, by_content: bool = True) -> None:
        """The guard: refuse any training clip of the excluded test splits."""
        check_no_test_clips(self.entries, self.excluded_test_entries, by_content)


def load_mixture(path: str | os.PathLike) -> Mixture:
    """Read a mixture file (module docstring): each source's list read with its own labels and mapped into the
    vocabulary. Errors name the file and the problem."""
    path = Path(path)
    root = path.parent
    try:
        content = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the mixture file ({error}).") from None
    if not isinstance(content, Mapping) or not content.get("sources"):
        raise ValueError(f"{path}: a mixture file is a JSON object with a non-empty `sources` list.")
    unknown = sorted(set(content) - _MIXTURE_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; known: {sorted(_MIXTURE_KEYS)}.")
    vocabulary = tuple(content.get("vocabulary") or BASIC_EMOTIONS)

    def resolve(value: str) -> Path:
        return Path(value) if os.path.isabs(value) else root / value

    sources = []
    for number, spec in enumerate(content["sources"]):
        where = f"{path}: sources[{number}]"
        if not isinstance(spec, Mapping) or "train_file" not in spec or "label_mapping" not in spec:
            raise ValueError(f"{where} needs `train_file` and `label_mapping`.")
        unknown = sorted(set(spec) - _SOURCE_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(_SOURCE_KEYS)}.")
        weight = float(spec.get("weight", 1.0))
        if not weight > 0:
            raise ValueError(f"{where}: the weight must be positive, got {weight}.")
        mapping = LabelMapping.from_file(resolve(spec["label_mapping"]), vocabulary)
        entries = read_list_file(resolve(spec["train_file"]), label2id=mapping.source_label2id)
        try:
            mapped, dropped = mapping.map_entries(entries)
        except LabelMappingError as error:
            raise LabelMappingError(f"{where} ({spec['train_file']}): {error}") from None
        if not mapped:
            raise ValueError(f"{where}: no clip of {spec['train_file']} maps into the vocabulary.")
        sources.append(MixtureSource(str(spec.get("name", mapping.dataset)), mapped, weight, dropped))
    excluded = [
        entry
        for test in content.get("exclude_test_files", [])
        for entry in read_list_file(resolve(test), label2id=_AnyLabel())
    ]
    return Mixture(vocabulary, sources, excluded)


class MixtureDataset(torch.utils.data.Dataset):
    """Several datasets sampled by weight: each epoch, position `i` holds a clip of source `s` with probability
    `weights[s] / sum(weights)`, uniform within the source (with replacement). The plan is a function of `(seed,
    epoch)`, the same on every process; [`set_epoch`] is forwarded to the sources (their augmentations).

    Args:
        datasets: the sources (e.g. [`AVFMAEVideoDataset`] with vocabulary labels).
        weights: their sampling weights (positive).
        seed (`int`, defaults to 0): seed of the plan.
        num_samples (`int`, *optional*): clips per epoch; default the sum of the sources' sizes.
    """

    def __init__(
        self,
        datasets: Sequence[torch.utils.data.Dataset],
        weights: Sequence[float],
        seed: int = 0,
        num_samples: int | None = None,
    ):
        if len(datasets) != len(weights) or not datasets:
            raise ValueError(f"Got {len(datasets)} datasets and {len(weights)} weights; pass one weight per dataset.")
        if any(not weight > 0 for weight in weights) or any(len(dataset) == 0 for dataset in datasets):
            raise ValueError("Every source needs a positive weight and at least one clip.")
        self.datasets = list(datasets)
        self.probabilities = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
        self.seed = seed
        self.num_samples = int(num_samples) if num_samples is not None else sum(len(d) for d in self.datasets)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        generator = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch]))
        self.plan_sources = generator.choice(len(self.datasets), size=self.num_samples, p=self.probabilities)
        sizes = np.array([len(dataset) for dataset in self.datasets])
        self.plan_items = (generator.random(self.num_samples) * sizes[self.plan_sources]).astype(np.int64)
        for dataset in self.datasets:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int):
        return self.datasets[int(self.plan_sources[index])][int(self.plan_items[index])]


__all__ = [
    "Mixture",
    "MixtureDataset",
    "MixtureSource",
    "TargetTestClipError",
    "check_no_test_clips",
    "clip_fingerprint",
    "find_test_clips",
    "load_mixture",
]
