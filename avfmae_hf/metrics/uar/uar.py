# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Unweighted average recall (UAR): the mean over classes of each class's recall, also called balanced accuracy."""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
Unweighted average recall (UAR): for every class that occurs in the references, the fraction of its references
predicted as that class; then the plain mean of these recalls, so that every class counts the same however rare it
is. This is the metric that dynamic facial expression recognition papers report as UAR, computed as AVF-MAE++'s
evaluation does (per-class accuracy from the confusion matrix, averaged). Classes that are predicted but never occur
in the references have no recall and are left out (the confusion-matrix computation would give NaN).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class indices.
    references (`list` of `int`): true class indices.
Returns:
    uar (`float`): mean per-class recall, between 0 and 1.
Example:
    >>> uar = evaluate.load("avfmae_hf/metrics/uar")
    >>> uar.compute(predictions=[0, 0, 0, 1], references=[0, 0, 1, 1])
    {'uar': 0.75}
"""

_CITATION = """
@inproceedings{wu2025avfmaepp,
  title={Scaling Affective Video Facial Masked Autoencoders via Efficient Audio-Visual Self-Supervised Learning},
  author={Wu, Xuecheng and others},
  booktitle={CVPR},
  year={2025}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class UnweightedAverageRecall(evaluate.Metric):
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
            raise ValueError("UAR needs at least one reference.")
        recalls = [np.mean(predictions[references == label] == label) for label in np.unique(references)]
        return {"uar": float(np.mean(recalls))}
