# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Label mappings of stage 2 ("hybrid intermediate fine-tuning"): each labelled source dataset's classes aligned
into one categorical vocabulary, so that several datasets train one head.

A label-mapping file is JSON:

```json
{
  "dataset": "DFEW",
  "source_labels": ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"],
  "mapping": {"happy": "happiness", "sad": "sadness", "neutral": "neutral", "angry": "anger",
              "surprise": "surprise", "disgust": "disgust", "fear": "fear"},
  "notes": "free text, ignored"
}
```

- `dataset`: the source's name (used in messages and reports).
- `source_labels` (optional): the source's class names in the index order of its list files. Without it, the
  dataset's official label order is used (`dataset_id2label`); datasets whose order the official release does not
  state need it.
- `mapping`: every source label -> a class of the vocabulary, or `null` to leave that class's clips out (e.g. a class
  with no counterpart). A source label missing from `mapping`, a mapping key that is not a source label and a target
  outside the vocabulary are errors ([`LabelMappingError`]), so nothing is mapped by accident.

Examples for MAFW, DFEW, CREMA-D, MER24, RAVDESS and IEMOCAP into `BASIC_EMOTIONS` ship in
`training/label_mappings/`.
"""

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .labels_avfmae import dataset_id2label


# The seven basic emotion categories most affective video datasets share: the shipped stage-2 vocabulary.
BASIC_EMOTIONS = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
_FILE_KEYS = {"dataset", "source_labels", "mapping", "notes"}


class LabelMappingError(ValueError):
    """A label-mapping file that cannot be used: unmapped or unknown labels, a target outside the vocabulary."""


@dataclass(frozen=True)
class LabelMapping:
    """One source dataset's classes -> the vocabulary.

    Attributes:
        dataset (`str`): the source's name.
        source_labels (`tuple[str, ...]`): its class names in list-file index order.
        mapping (`dict[str, str | None]`): source class -> vocabulary class, `None` for left-out classes.
        vocabulary (`tuple[str, ...]`): the target classes, in index order.
        path (`str`, *optional*): the file it was read from.
    """

    dataset: str
    source_labels: tuple[str, ...]
    mapping: dict
    vocabulary: tuple[str, ...]
    path: str | None = None

    def __post_init__(self):
        where = self.path or f"the label mapping of {self.dataset}"
        if len(set(self.vocabulary)) != len(self.vocabulary) or not self.vocabulary:
            raise LabelMappingError(f"{where}: the vocabulary must be a non-empty list of distinct class names.")
        if len(set(self.source_labels)) != len(self.source_labels):
            raise LabelMappingError(f"{where}: source_labels repeats a name: {list(self.source_labels)}.")
        unmapped = [label for label in self.source_labels if label not in self.mapping]
        if unmapped:
            raise LabelMappingError(
                f"{where}: source label(s) {', '.join(map(repr, unmapped))} of {self.dataset} are not mapped; map "
                "each to a vocabulary class, or to null to leave its clips out."
            )
        extra = [label for label in self.mapping if label not in self.source_labels]
        if extra:
            raise LabelMappingError(
                f"{where}: {', '.join(map(repr, extra))} are not labels of {self.dataset} (its labels: "
                f"{', '.join(self.source_labels)})."
            )
        unknown = sorted({target for target in self.mapping.values() if target is not None} - set(self.vocabulary))
        if unknown:
            raise LabelMappingError(
                f"{where}: {', '.join(map(repr, unknown))} are not classes of the vocabulary "
                f"({', '.join(self.vocabulary)})."
            )

    @classmethod
    def from_file(cls, path: str | os.PathLike, vocabulary: Sequence[str] = BASIC_EMOTIONS) -> "LabelMapping":
        """Read and check a label-mapping file (see the module docstring) against `vocabulary`."""
        path = Path(path)
        try:
            content = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise LabelMappingError(f"{path}: cannot read the label mapping ({error}).") from None
        if not isinstance(content, dict) or "dataset" not in content or "mapping" not in content:
            raise LabelMappingError(f"{path}: a label mapping is a JSON object with `dataset` and `mapping`.")
        unknown_keys = sorted(set(content) - _FILE_KEYS)
        if unknown_keys:
            raise LabelMappingError(f"{path}: unknown key(s) {unknown_keys}; known: {sorted(_FILE_KEYS)}.")
        source_labels = content.get("source_labels")
        if source_labels is None:
            try:
                source_labels = list(dataset_id2label(content["dataset"]).values())
            except ValueError as error:
                raise LabelMappingError(f"{path}: give `source_labels` ({error})") from None
        if not isinstance(content["mapping"], dict):
            raise LabelMappingError(f"{path}: `mapping` is an object of source label -> vocabulary class or null.")
        return cls(
            str(content["dataset"]),
            tuple(str(label) for label in source_labels),
            dict(content["mapping"]),
            tuple(vocabulary),
            os.fspath(path),
        )

    @property
    def source_label2id(self) -> dict[str, int]:
        """Source class name -> list-file index (list files may use either)."""
        return {label: index for index, label in enumerate(self.source_labels)}

    def target_index(self, source_index: int) -> int | None:
        """The vocabulary index of a source class index, `None` for a left-out class."""
        if not 0 <= source_index < len(self.source_labels):
            raise LabelMappingError(
                f"{self.path or self.dataset}: label index {source_index} is outside the {len(self.source_labels)} "
                f"source labels of {self.dataset}."
            )
        target = self.mapping[self.source_labels[source_index]]
        return None if target is None else self.vocabulary.index(target)

    def map_entries(self, entries: Sequence) -> tuple[list, int]:
        """List entries with source labels -> entries with vocabulary labels (left-out classes dropped), and the
        number dropped."""
        mapped, dropped = [], 0
        for entry in entries:
            target = self.target_index(int(entry.label))
            if target is None:
                dropped += 1
            else:
                mapped.append(replace(entry, label=target))
        return mapped, dropped


__all__ = ["BASIC_EMOTIONS", "LabelMapping", "LabelMappingError"]
