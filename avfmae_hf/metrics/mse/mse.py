# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Mean squared error (MSE) of regression predictions, per target and overall."""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
The mean squared error between predictions x and references y, mean((x - y)^2). For several regression targets per
sample, pass one list per sample: `mse` is then the mean over targets and `mse_<i>` the MSE of target `i`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`, or `list` of `list` of `float`): predicted values.
    references (`list` of `float`, or `list` of `list` of `float`): true values, in the same layout.
Returns:
    mse (`float`): the mean squared error (mean over targets when there are several).
    mse_<i> (`float`): per-target values, only for several targets.
Example:
    >>> mse = evaluate.load("avfmae_hf/metrics/mse")
    >>> mse.compute(predictions=[1.0, 2.0], references=[1.0, 4.0])
    {'mse': 2.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MeanSquaredError(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
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
        if predictions.shape != references.shape or predictions.shape[0] < 1:
            raise ValueError(
                f"MSE needs predictions and references of the same shape with at least one sample; got "
                f"{predictions.shape} and {references.shape}."
            )
        values = ((predictions - references) ** 2).mean(axis=0)
        if values.ndim == 0:
            return {"mse": float(values)}
        return {"mse": float(values.mean()), **{f"mse_{index}": float(value) for index, value in enumerate(values)}}
