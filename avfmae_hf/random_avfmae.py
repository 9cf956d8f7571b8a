# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""The one rule for the random sources that the processors and datasets accept."""

import numpy as np


# What every `generator=` argument of the processors accepts.
RandomSource = np.random.Generator | np.random.RandomState | int | None


def as_numpy_random(generator: RandomSource) -> np.random.Generator | np.random.RandomState:
    """A numpy random source from a `generator=` argument.

    An `int` seeds a `numpy.random.RandomState`, the stream of the official code (which seeds numpy's global
    `RandomState`), so `as_numpy_random(0)` draws what the official code draws after `np.random.seed(0)`. `None`
    gives a fresh `numpy.random.Generator` seeded from the operating system. Generators and `RandomState`s are
    returned as they are, so one source can serve a whole batch in order.
    """
    if generator is None:
        return np.random.default_rng()
    if isinstance(generator, (int, np.integer)):
        return np.random.RandomState(int(generator))
    if isinstance(generator, (np.random.Generator, np.random.RandomState)):
        return generator
    raise TypeError(
        f"generator must be a numpy.random.Generator, a numpy.random.RandomState, an int seed or None, got "
        f"{type(generator).__name__}."
    )


__all__ = ["RandomSource", "as_numpy_random"]
