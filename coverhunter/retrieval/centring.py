"""Vectors centred on their catalogue's mean before a cosine (not a step of the paper).

Vectors that all share a large common part have cosines crowded near 1: every 2DFTM (a
non-negative magnitude spectrum, :mod:`coverhunter.retrieval.fusion`) and a trained
model's chunk vectors alike. With the catalogue's mean subtracted and unit length
restored, what tells recordings apart weighs more. No labels are used: the mean is the
catalogue's own (in evaluation, each set's own), and a query is centred on the same mean.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mean_vector(vectors: np.ndarray) -> tuple[float, ...]:
    """The mean of vectors ``(n, D)``: ``D`` floats (zeros for no vectors)."""
    vectors = np.asarray(vectors, np.float64)
    return tuple(map(float, vectors.mean(axis=0))) if len(vectors) else (0.0,) * vectors.shape[1]


def centred(vectors: np.ndarray, centre: Sequence[float] | None) -> np.ndarray:
    """Vectors ``(n, D)`` minus ``centre``, L2-normalised, float64 (a vector equal to the
    centre becomes zero); unchanged when ``centre`` is None."""
    if centre is None:
        return np.asarray(vectors)
    x = np.asarray(vectors, np.float64) - np.asarray(centre, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def centred_on_mean(groups: Sequence[np.ndarray],
                    mean: Sequence[float] | None = None) -> tuple[list[np.ndarray], tuple[float, ...]]:
    """Groups of vectors ``(n_i, D)`` (each recording's chunk vectors) centred on ``mean``
    (None: the mean of them all), float32 as they are stored, and that mean."""
    mean = mean_vector(np.concatenate(groups)) if mean is None else tuple(map(float, mean))
    return [centred(g, mean).astype(np.float32) for g in groups], mean
