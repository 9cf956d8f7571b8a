# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Weighted average recall (WAR): the fraction of correct predictions, i.e. accuracy."""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
Weighted average recall (WAR): the per-class recalls averaged with each class weighted by its number of references,
which equals the fraction of all predictions that are correct (accuracy, the trace of the confusion matrix over its
sum). Dynamic facial expression recognition papers report it next to UAR.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class indices.
    references (`list` of `int`): true class indices.
Returns:
    war (`float`): accuracy, between 0 and 1.
Example:
    >>> war = evaluate.load("avfmae_hf/metrics/war")
    >>> war.compute(predictions=[0, 0, 0, 1], references=[0, 0, 1, 1])
    {'war': 0.75}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WeightedAverageRecall(evaluate.Metric):
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
            raise ValueError("WAR needs at least one reference.")
        return {"war": float(np.mean(predictions == references))}
