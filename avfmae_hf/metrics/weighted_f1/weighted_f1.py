# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Support-weighted F1: every class's F1 score, averaged with weights proportional to its number of references."""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
Weighted F1: for every class that occurs in the references or the predictions, the F1 score (harmonic mean of
precision and recall, 0 when both are 0 or undefined), averaged with weights equal to the class's number of
references, so classes that never occur in the references weigh nothing. This is the `average="weighted"` F1 that
AVF-MAE++'s evaluation reports; `macro_f1` (plain mean over the same classes) is returned as well.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class indices.
    references (`list` of `int`): true class indices.
Returns:
    weighted_f1 (`float`): support-weighted mean F1, between 0 and 1.
    macro_f1 (`float`): unweighted mean F1 over the classes seen in references or predictions.
Example:
    >>> f1 = evaluate.load("avfmae_hf/metrics/weighted_f1")
    >>> f1.compute(predictions=[0, 0, 0, 1], references=[0, 0, 1, 1])
    {'weighted_f1': 0.7333333333333334, 'macro_f1': 0.7333333333333334}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WeightedF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if references.size == 0:
            raise ValueError("F1 needs at least one reference.")
        labels = np.union1d(references, predictions)
        true_positives = np.array([np.sum((predictions == label) & (references == label)) for label in labels])
        predicted = np.array([np.sum(predictions == label) for label in labels])
        support = np.array([np.sum(references == label) for label in labels])
        # F1 = 2 TP / (predicted + actual); 0 where the class is neither predicted nor referenced correctly
        denominator = predicted + support
        f1 = np.divide(2.0 * true_positives, denominator, out=np.zeros(len(labels)), where=denominator > 0)
        return {
            "weighted_f1": float(np.sum(f1 * support) / np.sum(support)),
            "macro_f1": float(np.mean(f1)),
        }
