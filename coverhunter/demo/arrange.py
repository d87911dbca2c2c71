"""Arrangement: a tune cut into sections and played pass after pass, with a cut or a repeat.

:func:`pass_plan` decides which section of the tune is played when; :func:`place` lays
any notes of one pass (the melody, or an accompaniment part) out along that plan, so the
band follows the melody's cuts and repeats.
"""
from __future__ import annotations

import numpy as np

from coverhunter.demo.tune import Tune

__all__ = ["arrange", "pass_plan", "place", "section_bounds", "split_at"]

# one played section: (start in the pass, end in the pass, start in the arrangement,
# pass number, section number), seconds of tune time
Piece = tuple[float, float, float, int, int]


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


def pass_plan(tune: Tune, length_s: float, n_sections: int,
              cut: tuple[int, int] | None = None,
              repeat: tuple[int, int] | None = None) -> tuple[list[Piece], int]:
    """The sections played, in order, to fill ``length_s`` seconds (tune time), and the
    number of passes begun. ``cut = (pass, section)`` leaves that section out of that
    pass; ``repeat = (pass, section)`` plays it twice in a row in that pass."""
    return plan_sections(section_bounds(tune, n_sections), length_s, cut, repeat)


def plan_sections(bounds: np.ndarray, length_s: float, cut: tuple[int, int] | None = None,
                  repeat: tuple[int, int] | None = None) -> tuple[list[Piece], int]:
    """:func:`pass_plan` from the section ``bounds`` ``(n_sec + 1,)`` of one pass."""
    n_sec = bounds.size - 1
    plan: list[Piece] = []
    t, n_pass = 0.0, 0
    while t < length_s:
        order = list(range(n_sec))
        if cut is not None and cut[0] == n_pass and cut[1] < n_sec and n_sec > 1:
            order.remove(cut[1])
        if repeat is not None and repeat[0] == n_pass and repeat[1] in order:
            order.insert(order.index(repeat[1]) + 1, repeat[1])
        for s in order:
            start, end = bounds[s], bounds[s + 1]
            plan.append((start, end, t, n_pass, s))
            t += end - start
        n_pass += 1
    return plan, n_pass


def place(notes: np.ndarray, plan: list[Piece], length_s: float,
          skip: tuple[int, int] | None = None) -> np.ndarray:
    """``notes`` of one pass laid out along ``plan``: each note starting in a played
    section is shifted into place (notes of the ``skip = (pass, section)`` piece are left
    out); notes starting at or after ``length_s`` are dropped and the rest end by it."""
    pieces = []
    for start, end, t, n_pass, s in plan:
        if skip is not None and (n_pass, s) == skip:
            continue
        sel = notes[(notes[:, 0] >= start) & (notes[:, 0] < end)].copy()
        sel[:, 0] += t - start
        pieces.append(sel)
    out = np.concatenate(pieces) if pieces else np.zeros((0, 4))
    out = out[out[:, 0] < length_s]
    out[:, 1] = np.minimum(out[:, 1], length_s - out[:, 0])
    return out


def split_at(notes: np.ndarray, bounds: np.ndarray, min_s: float = 0.15) -> np.ndarray:
    """``notes`` with every note that sounds across a boundary in ``bounds`` cut there; the
    rest after the boundary is struck again if it lasts ``min_s`` or more (so a held
    chord is heard whichever section follows)."""
    rows = []
    for onset, dur, pitch, vel in notes.tolist():
        end = onset + dur
        inner = [b for b in bounds.tolist() if onset + 1e-9 < b < end - 1e-9]
        edges = [onset, *inner, end]
        for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
            if k == 0 or b - a >= min_s:
                rows.append((a, b - a, pitch, vel))
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def arrange(tune: Tune, length_s: float, n_sections: int,
            cut: tuple[int, int] | None = None,
            repeat: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
    """The tune played pass after pass for ``length_s`` seconds (tune time), with edits.

    ``cut = (pass, section)`` leaves that section out of that pass; ``repeat = (pass,
    section)`` plays it twice in a row in that pass. Notes are shifted into place,
    notes starting at or after ``length_s`` are dropped and the rest end by ``length_s``.
    Returns ``(notes (n, 4), n_passes)``, ``n_passes`` = passes begun.
    """
    plan, n_pass = pass_plan(tune, length_s, n_sections, cut, repeat)
    return place(tune.notes, plan, length_s), n_pass
