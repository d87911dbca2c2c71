"""When two tunes count as the same: melodic-interval n-gram overlap and normalised titles.

The demo's dedupe (:mod:`coverhunter.demo.selection`) and the tests use these.
"""
from __future__ import annotations

import re

import numpy as np

from coverhunter.demo.tune import Tune

__all__ = ["containment", "melody_similarity", "ngrams", "normalise_title"]

_MAX_INTERVALS = 64  # only the opening of a melody is compared


def ngrams(melody: np.ndarray, n: int) -> set[tuple[int, ...]]:
    """The melodic-interval ``n``-grams of the first :data:`_MAX_INTERVALS` intervals."""
    iv = np.diff(melody[: _MAX_INTERVALS + 1]).astype(int).tolist()
    return {tuple(iv[i:i + n]) for i in range(len(iv) - n + 1)}


def containment(ga: set, gb: set) -> float:
    """``|A ∩ B| / min(|A|, |B|)`` (0.0 when either set is empty)."""
    return len(ga & gb) / min(len(ga), len(gb)) if ga and gb else 0.0


def melody_similarity(a: Tune, b: Tune, n: int = 4) -> float:
    """Share of melodic interval ``n``-grams (first 64 intervals) two tunes have in common.

    Transposition-invariant (intervals) and insensitive to rhythm (repeated pitches are
    merged): |A ∩ B| / min(|A|, |B|). 1.0 for copies; 0.6-0.9 for many settings of one
    tune; about 0.03 (median) for unrelated tunes.
    """
    return containment(ngrams(a.melody, n), ngrams(b.melody, n))


def normalise_title(title: str) -> str:
    """A title reduced for matching: lower case, letters only, no tune-type words."""
    t = re.sub(r"\(.*?\)|--.*$", "", title.lower())
    t = re.sub(r"\b(the|reel|jig|hornpipe|strathspey|air|march|set|setting|1st|2nd|3rd|no|"
               r"a|an)\b", "", t)
    return re.sub(r"[^a-z]", "", t)
