# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Pearson's correlation coefficient (PCC), reported next to CCC for dimensional emotion regression."""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
Pearson's correlation coefficient between predictions x and references y:

    PCC = cov(x, y) / (std(x) std(y))

It is 1 for a perfect linear agreement (whatever the shift and scale), 0 for none, -1 for a perfect inversion; it is
0 when either side is constant. For several regression targets per sample, pass one list per sample: `pcc` is then
the mean over targets and `pcc_<i>` the PCC of target `i`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`, or `list` of `list` of `float`): predicted values.
    references (`list` of `float`, or `list` of `list` of `float`): true values, in the same layout.
Returns:
    pcc (`float`): the correlation (mean over targets when there are several).
    pcc_<i> (`float`): per-target values, only for several targets.
Example:
    >>> pcc = evaluate.load("avfmae_hf/metrics/pcc")
    >>> pcc.compute(predictions=[1.0, 2.0, 3.0], references=[2.0, 4.0, 6.0])
    {'pcc': 1.0}
"""

_CITATION = """
@article{pearson1895note,
  title={Note on regression and inheritance in the case of two parents},
  author={Pearson, Karl},
  journal={Proceedings of the Royal Society of London},
  volume={58},
  pages={240--242},
  year={1895}
}
"""


def pearson_correlation(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    """PCC along the first axis: `(N,)` inputs give a scalar, `(N, D)` inputs one value per target."""
    prediction_centred = predictions - predictions.mean(axis=0)
    reference_centred = references - references.mean(axis=0)
    covariance = (prediction_centred * reference_centred).mean(axis=0)
    denominator = np.sqrt((prediction_centred**2).mean(axis=0) * (reference_centred**2).mean(axis=0))
    return np.divide(covariance, denominator, out=np.zeros_like(denominator), where=denominator > 0)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PearsonCorrelationCoefficient(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("float64")),
                        "references": datasets.Sequence(datasets.Value("float64")),
                    }
                ),
            ],
        )

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions, dtype=np.float64)
        references = np.asarray(references, dtype=np.float64)
        if predictions.shape != references.shape or predictions.shape[0] < 2:
            raise ValueError(
                f"PCC needs predictions and references of the same shape with at least two samples; got "
                f"{predictions.shape} and {references.shape}."
            )
        values = pearson_correlation(predictions, references)
        if values.ndim == 0:
            return {"pcc": float(values)}
        return {"pcc": float(values.mean()), **{f"pcc_{index}": float(value) for index, value in enumerate(values)}}
