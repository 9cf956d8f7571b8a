# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Label vocabularies: the label orders of the official fine-tuning datasets, `id2label` from text, and the one rule
that decides the labels of a classifier (used by conversion, the command line and the training scripts)."""

import json
import re
from collections.abc import Mapping


# Class counts the official fine-tuning code accepts per `--data_set` (the first is its default).
OFFICIAL_DATASET_NUM_LABELS = {
    "MAFW": (11, 43),
    "DFEW": (7,),
    "CREMA-D": (6, 4),
    "RAVDESS": (8,),
    "MSP-IMPROV": (4,),
    "IEMOCAP": (4,),
    "MER2023": (6,),
    "MER24-LABELED": (6,),
    "AVCAFFE": (5,),
}
# Label names in index order, where the official release states them; the other datasets are read as integer
# labels from list files, so their names are not known.
OFFICIAL_LABEL_ORDERS = {
    ("MAFW", 11): (
        "anger",
        "disgust",
        "fear",
        "happiness",
        "neutral",
        "sadness",
        "surprise",
        "contempt",
        "anxiety",
        "helplessness",
        "disappointment",
    ),
    ("CREMA-D", 6): ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"),
    ("CREMA-D", 4): ("ANG", "HAP", "NEU", "SAD"),
    ("MER24-LABELED", 6): ("worried", "happy", "neutral", "angry", "surprise", "sad"),
    ("MSP-IMPROV", 4): ("A", "H", "N", "S"),
}
_DATASET_ALIASES = {"MER24": "MER24-LABELED"}


def official_dataset_name(name: str) -> str:
    """The official `--data_set` spelling of a dataset name (case, dashes and underscores are ignored)."""

    def simplify(text: str) -> str:
        return re.sub(r"[^A-Z0-9]", "", text.upper())

    known = {simplify(dataset): dataset for dataset in OFFICIAL_DATASET_NUM_LABELS}
    known.update({simplify(alias): dataset for alias, dataset in _DATASET_ALIASES.items()})
    if simplify(name) not in known:
        raise ValueError(
            f"Unknown dataset {name!r}; the official fine-tuning code supports {', '.join(OFFICIAL_DATASET_NUM_LABELS)}."
        )
    return known[simplify(name)]


def dataset_id2label(name: str, num_labels: int | None = None) -> dict[int, str]:
    """The official label order of a fine-tuning dataset, as `id2label`.

    `num_labels` picks a variant (CREMA-D 6 or 4 classes, MAFW 11 or 43) and defaults to the dataset's usual count.
    Raises a `ValueError` for a class count the official code does not use, and for datasets whose label names the
    release does not state (it reads integer labels from list files): pass `id2label` for those rather than guess.
    """
    dataset = official_dataset_name(name)
    counts = OFFICIAL_DATASET_NUM_LABELS[dataset]
    num_labels = counts[0] if num_labels is None else num_labels
    if num_labels not in counts:
        raise ValueError(
            f"The official code trains {dataset} with {' or '.join(map(str, counts))} classes, not {num_labels}."
        )
    order = OFFICIAL_LABEL_ORDERS.get((dataset, num_labels))
    if order is None:
        raise ValueError(
            f"The official release reads {dataset} ({num_labels} classes) as integer labels from its list files and "
            f"does not state their names: pass id2label (e.g. --id2label name0,name1,...) with the {num_labels} "
            "names in the order of your list files."
        )
    return dict(enumerate(order))


def parse_id2label(text: str) -> dict[int, str]:
    """`id2label` from a JSON object (`{"0": "anger", ...}`), a JSON list, or a comma-separated list of names."""
    text = text.strip()
    if text.startswith(("{", "[")):
        value = json.loads(text)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        return {int(index): str(label) for index, label in items}
    return {index: label.strip() for index, label in enumerate(text.split(","))}


def resolve_labels(
    *,
    id2label: Mapping[int, str] | None = None,
    num_labels: int | None = None,
    dataset: str | None = None,
    existing_labels: Mapping[int, str] | int | None = None,
    default_dataset: str | None = None,
) -> dict[int, str]:
    """The `id2label` of a classifier.

    Sources, which must agree on the class count: `id2label`; `num_labels`; `existing_labels`, the labels (a
    mapping) or the class count (an int) of a classification head the weights already have; and `dataset`, whose
    official label order is used where the release states it (MAFW, CREMA-D, MER24, MSP-IMPROV) and which otherwise
    needs `id2label`. When none of `id2label`, `num_labels` and `dataset` is given, `default_dataset` (e.g. the
    dataset named by a checkpoint's training arguments) is tried, then the existing labels are kept. A class count
    alone gives the generic names `LABEL_0`, `LABEL_1`, ...; with nothing at all a `ValueError` asks for the labels
    (they are never guessed).
    """
    origin = ""
    if id2label is None and num_labels is None and dataset is None and default_dataset:
        try:
            dataset = official_dataset_name(default_dataset)
            origin = f"The checkpoint's training arguments name the dataset {dataset}. "
        except ValueError:
            dataset = None
    if id2label is None and num_labels is None and dataset is None and isinstance(existing_labels, Mapping):
        return {int(index): str(label) for index, label in existing_labels.items()}
    if id2label is not None:
        id2label = {int(index): str(label) for index, label in id2label.items()}
        if sorted(id2label) != list(range(len(id2label))):
            raise ValueError(f"id2label must number its labels 0..n-1, got the indices {sorted(id2label)}.")
    existing_count = len(existing_labels) if isinstance(existing_labels, Mapping) else existing_labels
    counts = {
        "id2label": len(id2label) if id2label is not None else None,
        "num_labels": num_labels,
        "the existing classification head": existing_count,
    }
    known = {name: count for name, count in counts.items() if count is not None}
    if len(set(known.values())) > 1:
        raise ValueError(
            "The number of classes does not agree: " + ", ".join(f"{name} {count}" for name, count in known.items())
        )
    count = next(iter(known.values()), None)
    if dataset is not None:
        name = official_dataset_name(dataset)
        if count is not None and count not in OFFICIAL_DATASET_NUM_LABELS[name]:
            allowed = " or ".join(map(str, OFFICIAL_DATASET_NUM_LABELS[name]))
            raise ValueError(f"{origin}The official code trains {name} with {allowed} classes, not {count}.")
        if id2label is None:
            try:
                id2label = dataset_id2label(name, count)
            except ValueError as error:
                raise ValueError(f"{origin}{error}") from None
    if id2label is None:
        if count is None:
            raise ValueError(
                "Name the classes: a dataset with an official label order, id2label (class names in the order of the "
                "integer labels), or num_labels; labels are not guessed."
            )
        id2label = {index: f"LABEL_{index}" for index in range(count)}
    return id2label


__all__ = [
    "OFFICIAL_DATASET_NUM_LABELS",
    "OFFICIAL_LABEL_ORDERS",
    "dataset_id2label",
    "official_dataset_name",
    "parse_id2label",
    "resolve_labels",
]
