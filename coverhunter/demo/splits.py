"""Splits by work: how many ordinary works each split gets, and which ones."""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from coverhunter.demo import seeds

__all__ = ["assign_splits", "split_counts"]


def split_counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder counts; every split with a positive share gets a work when n allows."""
    names = list(fractions)
    raw = [n * fractions[s] for s in names]
    counts = [math.floor(x) for x in raw]
    for i in sorted(range(len(names)), key=lambda i: raw[i] - counts[i], reverse=True):
        if sum(counts) >= n:
            break
        counts[i] += 1
    positive = [i for i, s in enumerate(names) if fractions[s] > 0]
    if n >= len(positive):
        for i in positive:
            while counts[i] == 0:
                donor = max(range(len(names)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return dict(zip(names, counts))


def assign_splits(n: int, fractions: Mapping[str, float], seed: int) -> list[str]:
    """The split of each of ``n`` works: :func:`split_counts` of them, shuffled by the seed."""
    perm = seeds.rng(seed, seeds.SPLIT).permutation(n)
    split_of = np.empty(n, dtype=object)
    start = 0
    for split, c in split_counts(n, fractions).items():
        split_of[perm[start:start + c]] = split
        start += c
    return [str(s) for s in split_of]
