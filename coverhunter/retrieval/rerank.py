"""Mutual-neighbour re-ranking of a query's shortlist.

Not a step of the CoverHunter paper: a query expansion and its catalogue-side twin, kept
to pairs of mutual nearest neighbours. A catalogue that holds several versions of a work
lets the versions vouch for each other: a candidate that is close to the query's best
match, or whose own nearest version is close to the query, is probably the same work.

For a query q, its shortlist S (the first ``shortlist`` recordings of its ranking) and
similarities ``s`` (``1 - distance``, a recording with itself at 1), every c in S gets

    r(c) = (2·s(q, c) + w·a(c) + w·b(c)) / (2 + 2w)

- ``a(c) = s(n, c)``, n the query's best match, when q and n are mutual nearest
  neighbours (no other recording of S is closer to n than q is); else ``s(q, c)``;
- ``b(c) = s(q, m)``, m the nearest other recording of S to c, when c and m are mutual
  nearest neighbours within S; else ``s(q, c)``.

``w = 0`` (or a shortlist of one) leaves every score as it was. Without the mutual gate,
a catalogue of one recording per work lost more (docs/generality.md "Neighbour re-ranking").
"""
from __future__ import annotations

import numpy as np


def neighbour_rerank(s_query: np.ndarray, s_short: np.ndarray, weight: float) -> np.ndarray:
    """Re-ranked scores ``(K,)`` of a shortlist from the query's similarities to it
    ``s_query`` ``(K,)`` and their own ``s_short`` ``(K, K)`` (diagonal ignored)."""
    s_query = np.asarray(s_query, np.float64)
    k = len(s_query)
    if weight == 0 or k < 2:
        return s_query
    others = np.array(s_short, np.float64)
    np.fill_diagonal(others, -np.inf)
    nearest = others.argmax(axis=1)                                   # (K,) each one's nearest other
    n = int(np.argmax(s_query))                                       # the query's best match
    with_self = others[n].copy()
    with_self[n] = 1.0                                                # s(n, n)
    a = with_self if s_query[n] >= others[n].max() else s_query
    mutual = nearest[nearest] == np.arange(k)
    b = np.where(mutual, s_query[nearest], s_query)
    return (2.0 * s_query + weight * a + weight * b) / (2.0 + 2.0 * weight)


def rerank_square(d: np.ndarray, shortlist: int, weight: float) -> np.ndarray:
    """Leave-one-out distances ``(n, n)`` of a set re-ranked row by row: each recording's
    first ``shortlist`` others (itself left out, as a query is not in its catalogue) get
    ``1 - r``; the rest stay behind them in their order."""
    d = np.asarray(d, np.float64)
    if weight == 0:
        return d
    out = d.copy()
    s = 1.0 - d
    for i in range(len(d)):
        order = np.argsort(d[i], kind="stable")
        order = order[order != i]
        short, rest = order[:shortlist], order[shortlist:]
        out[i, short] = 1.0 - neighbour_rerank(s[i, short], s[np.ix_(short, short)], weight)
        if len(rest):
            out[i, rest] = d[i, rest] - d[i, rest].min() + out[i, short].max() + 1.0
    return out
