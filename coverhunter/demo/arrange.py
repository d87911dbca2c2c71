"""Arrangement: a tune cut into sections and played pass after pass, with a cut or a repeat."""
from __future__ import annotations

import numpy as np

from coverhunter.demo.tune import Tune

__all__ = ["arrange", "section_bounds"]


def section_bounds(tune: Tune, n_sections: int) -> np.ndarray:
    """Boundaries (s) of ``n_sections`` near-equal sections of one pass, at note onsets.

    Shape ``(k + 1,)`` with ``k <= n_sections`` (fewer when the tune has too few onsets):
    ``0, b_1, ..., length_s``. For an AABB tune with 4 sections these are the strains.
    """
    onsets = np.unique(tune.notes[:, 0])
    inner = []
    for k in range(1, n_sections):
        b = float(onsets[np.abs(onsets - k * tune.length_s / n_sections).argmin()])
        if b > (inner[-1] if inner else 0.0) and b < tune.length_s:
            inner.append(b)
    return np.array([0.0, *inner, tune.length_s])


def arrange(tune: Tune, length_s: float, n_sections: int,
            cut: tuple[int, int] | None = None,
            repeat: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
    """The tune played pass after pass for ``length_s`` seconds (tune time), with edits.

    ``cut = (pass, section)`` leaves that section out of that pass; ``repeat = (pass,
    section)`` plays it twice in a row in that pass. Notes are shifted into place,
    notes starting at or after ``length_s`` are dropped and the rest end by ``length_s``.
    Returns ``(notes (n, 4), n_passes)``, ``n_passes`` = passes begun.
    """
    bounds = section_bounds(tune, n_sections)
    n_sec = bounds.size - 1
    pieces, t, n_pass = [], 0.0, 0
    while t < length_s:
        order = list(range(n_sec))
        if cut is not None and cut[0] == n_pass and cut[1] < n_sec and n_sec > 1:
            order.remove(cut[1])
        if repeat is not None and repeat[0] == n_pass and repeat[1] in order:
            order.insert(order.index(repeat[1]) + 1, repeat[1])
        for s in order:
            start, end = bounds[s], bounds[s + 1]
            sel = tune.notes[(tune.notes[:, 0] >= start) & (tune.notes[:, 0] < end)].copy()
            sel[:, 0] += t - start
            pieces.append(sel)
            t += end - start
        n_pass += 1
    notes = np.concatenate(pieces) if pieces else np.zeros((0, 4))
    notes = notes[notes[:, 0] < length_s]
    notes[:, 1] = np.minimum(notes[:, 1], length_s - notes[:, 0])
    return notes, n_pass
