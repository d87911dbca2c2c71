"""The build's random streams, all from ``demo.seed``: one stream id per purpose, and
per-item keys, so adding a work leaves the draws of every other work unchanged."""
from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["ARRANGEMENT", "ORDER", "SPLIT", "VERSION", "WORK", "rng", "stable_int"]

WORK = 1     # a work's number of versions, its settings' order and its programs
VERSION = 2  # everything drawn for one version
SPLIT = 3    # which ordinary work goes to which split
ORDER = 4    # the order in which corpus tunes are considered
ARRANGEMENT = 5  # a version's soundfont and band arrangement (apart, so the draws of
                 # VERSION, and a melody-only catalogue, are as they were before bands)


def rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    """The generator of stream ``stream`` (one of the ids above) for the item ``keys``."""
    return np.random.default_rng([seed, stream, *keys])


def stable_int(*parts: object) -> int:
    """A 64-bit integer key of ``parts`` that is the same in every process and run."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big")
