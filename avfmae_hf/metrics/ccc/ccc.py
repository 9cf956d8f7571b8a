# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Lin's concordance correlation coefficient (CCC), the usual metric of dimensional emotion regression."""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
Lin's concordance correlation coefficient between predictions x and references y:

    CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2)

with population (biased) variances and covariance. It is 1 for perfect agreement, 0 for none, -1 for perfect
inversion, and unlike Pearson's correlation it penalises shifts and scale differences. For several regression
targets per sample (e.g. arousal and valence), pass one list per sample: `ccc` is then the mean over targets and
`ccc_<i>` the CCC of target `i`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`, or `list` of `list` of `float`): predicted values.
    references (`list` of `float`, or `list` of `list` of `float`): true values, in the same layout.
Returns:
    ccc (`float`): the concordance correlation coefficient (mean over targets when there are several).
    ccc_<i> (`float`): per-target values, only for several targets.
Example:
    >>> ccc = evaluate.load("avfmae_hf/metrics/ccc")
    >>> ccc.compute(predictions=[1.0, 2.0, 3.0], references=[1.0, 2.0, 3.0])
    {'ccc': 1.0}
"""

_CITATION = """
@article{lin1989concordance,
  title={A concordance correlation coefficient to evaluate reproducibility},
  author={Lin, Lawrence I-Kuei},
  journal={Biometrics},
  volume={45},
  number={1},
  pages={255--268},
  year={1989}
}
"""


def concordance_correlation(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    """CCC along the first axis: `(N,)` inputs give a scalar, `(N, D)` inputs one value per target."""
    prediction_mean, reference_mean = predictions.mean(axis=0), references.mean(axis=0)
    covariance = ((predictions - prediction_mean) * (references - reference_mean)).mean(axis=0)
    denominator = predictions.var(axis=0) + references.var(axis=0) + (prediction_mean - reference_mean) ** 2
    return np.divide(2.0 * covariance, denominator, out=np.zeros_like(denominator), where=denominator > 0)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ConcordanceCorrelationCoefficient(evaluate.Metric):
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
                f"CCC needs predictions and references of the same shape with at least two samples; got "
                f"{predictions.shape} and {references.shape}."
            )
        values = concordance_correlation(predictions, references)
        if values.ndim == 0:
            return {"ccc": float(values)}
        return {"ccc": float(values.mean()), **{f"ccc_{index}": float(value) for index, value in enumerate(values)}}
