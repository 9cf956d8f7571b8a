# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Micro and macro F1 of multi-label predictions (a 0/1 decision per class)."""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
F1 scores of multi-label classification: every sample has a 0/1 decision per class (e.g. a sigmoid above 0.5).
`micro_f1` counts every (sample, class) decision together; `macro_f1` is the mean of the per-class F1 scores (a class
with no positive reference and no positive prediction counts as 0); `subset_accuracy` is
the share of samples whose decisions are all right.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `int`): 0/1 decisions, one list of `num_classes` per sample.
    references (`list` of `list` of `int`): true 0/1 labels, in the same layout.
Returns:
    micro_f1 (`float`), macro_f1 (`float`), subset_accuracy (`float`).
Example:
    >>> f1 = evaluate.load("avfmae_hf/metrics/multilabel_f1")
    >>> f1.compute(predictions=[[1, 0], [1, 1]], references=[[1, 0], [0, 1]])
    {'micro_f1': 0.8, 'macro_f1': 0.8333333333333333, 'subset_accuracy': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultiLabelF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int32")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
        )

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if predictions.shape != references.shape or predictions.ndim != 2:
            raise ValueError(
                f"Multi-label F1 needs (samples, classes) predictions and references of the same shape; got "
                f"{predictions.shape} and {references.shape}."
            )
        true_positives = ((predictions == 1) & (references == 1)).sum(axis=0)
        # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (predicted positives + reference positives)
        positives = (predictions == 1).sum(axis=0) + (references == 1).sum(axis=0)
        per_class = np.divide(2.0 * true_positives, positives, out=np.zeros(len(positives)), where=positives > 0)
        micro = 2.0 * true_positives.sum() / positives.sum() if positives.sum() > 0 else 0.0
        return {
            "micro_f1": float(micro),
            "macro_f1": float(per_class.mean()),
            "subset_accuracy": float((predictions == references).all(axis=1).mean()),
        }
