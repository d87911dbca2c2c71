"""Retrieval metrics [III-A, MIREX protocol] and the track distance of inference [II-D].

``retrieval_metrics`` ranks the gallery for each query by distance and reports:

- ``mAP``: mean over queries of average precision (mean of precision@k at each relevant rank);
- ``MR1``: mean 1-based rank of the first relevant item;
- ``HR1``: share of queries whose top item is relevant;
- ``P10``: mean precision in the top 10 (relevant items in the top 10, divided by 10);
- ``n_queries``: queries scored; ``n_queries_without_relevant``: queries left out of the
  means because the gallery holds no other version of their work.

A gallery item whose id equals the query's id (the query itself, leave-one-out) is removed
from that query's ranking. Ties are broken pessimistically: at equal distance irrelevant
items rank before relevant ones, so a model that outputs constant distances cannot score
well by the luck of gallery order.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOP_K = 10           # the "10" of P@10 (MIREX)
BLOCK_ELEMENTS = 1 << 24  # distance-matrix entries processed at once (bounds memory)


def _as_ids(values: Sequence, n: int, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    if arr.shape != (n,):
        raise ValueError(f"{what} has {arr.shape[0] if arr.ndim else 0} entries, expected {n}")
    return arr


def _query_stats(dist: np.ndarray, rel: np.ndarray) -> tuple[np.ndarray, ...]:
    """AP, first-relevant rank, top-1 hit and P@10 of a block of queries ``(q, G)``."""
    order = np.lexsort((rel, dist), axis=1)          # by distance, irrelevant first on ties
    hits = np.take_along_axis(rel, order, axis=1)    # (q, G) bool, in rank order
    cum = np.cumsum(hits, axis=1)                    # relevant items up to each rank
    ranks = np.arange(1, hits.shape[1] + 1)
    ap = (cum / ranks * hits).sum(axis=1) / hits.sum(axis=1)
    first = hits.argmax(axis=1) + 1
    p10 = cum[:, min(TOP_K, hits.shape[1]) - 1] / TOP_K
    return ap, first, hits[:, 0], p10


def _per_query(distances, query_work_ids: Sequence, gallery_work_ids: Sequence,
               query_ids: Sequence | None, gallery_ids: Sequence | None) -> tuple[np.ndarray, ...]:
    """AP, first-relevant rank, top-1 hit and P@10 of every query of a ``(n_queries,
    n_gallery)`` distance matrix, each ``(n_queries,)``, NaN where a query has nothing
    relevant (a query's own recording, by id, is never relevant and ranks last)."""
    dist = np.asarray(distances, dtype=np.float64)
    if dist.ndim != 2:
        raise ValueError(f"distances must be 2-D (queries, gallery), got shape {dist.shape}")
    if np.isnan(dist).any():
        raise ValueError("distances contain NaN; check the embeddings for non-finite values")
    n_q, n_g = dist.shape
    qw = _as_ids(query_work_ids, n_q, "query_work_ids")
    gw = _as_ids(gallery_work_ids, n_g, "gallery_work_ids")
    if (query_ids is None) != (gallery_ids is None):
        raise ValueError("give both query_ids and gallery_ids, or neither")
    qi = None if query_ids is None else _as_ids(query_ids, n_q, "query_ids")
    gi = None if gallery_ids is None else _as_ids(gallery_ids, n_g, "gallery_ids")

    out = np.full((4, n_q), np.nan)
    rows = max(1, BLOCK_ELEMENTS // max(n_g, 1))
    for lo in range(0, n_q, rows):
        block = dist[lo: lo + rows]
        rel = qw[lo: lo + rows, None] == gw[None, :]
        if qi is not None:
            self_match = qi[lo: lo + rows, None] == gi[None, :]
            block = np.where(self_match, np.inf, block)   # ranked last ...
            rel &= ~self_match                            # ... and never relevant
        has = rel.any(axis=1)
        if has.any():
            out[:, lo + np.flatnonzero(has)] = np.stack(_query_stats(block[has], rel[has]))
    return tuple(out)


def average_precisions(distances, query_work_ids: Sequence, gallery_work_ids: Sequence,
                       query_ids: Sequence | None = None, gallery_ids: Sequence | None = None) -> np.ndarray:
    """Each query's average precision ``(n_queries,)`` (NaN: nothing relevant): their mean
    over the queries with something relevant is :func:`retrieval_metrics`' mAP."""
    return _per_query(distances, query_work_ids, gallery_work_ids, query_ids, gallery_ids)[0]


def retrieval_metrics(distances, query_work_ids: Sequence, gallery_work_ids: Sequence,
                      query_ids: Sequence | None = None,
                      gallery_ids: Sequence | None = None) -> dict[str, float | int]:
    """mAP, MR1, HR1, P10 of a ``(n_queries, n_gallery)`` distance matrix (lower = closer)."""
    ap, first, top1, p10 = _per_query(distances, query_work_ids, gallery_work_ids, query_ids, gallery_ids)
    has = ~np.isnan(ap)
    if not has.any():
        return {"mAP": float("nan"), "MR1": float("nan"), "HR1": float("nan"),
                "P10": float("nan"), "n_queries": 0, "n_queries_without_relevant": int(len(ap))}
    return {"mAP": float(ap[has].mean()), "MR1": float(first[has].mean()), "HR1": float(top1[has].mean()),
            "P10": float(p10[has].mean()), "n_queries": int(has.sum()),
            "n_queries_without_relevant": int((~has).sum())}


def track_distances(query_chunks: Sequence[np.ndarray],
                    gallery_chunks: Sequence[np.ndarray]) -> np.ndarray:
    """Track-to-track distance: the smallest cosine distance over all chunk pairs.

    ``query_chunks[i]`` is ``(n_i, D)`` (one row per chunk embedding), likewise the gallery.
    Returns ``(n_queries, n_gallery)`` float32. Chunk similarities are one matrix product
    per block of query rows, reduced to tracks with segment maxima (no loop over pairs).
    """
    def stack(chunks: Sequence[np.ndarray], what: str) -> tuple[np.ndarray, np.ndarray]:
        sizes = np.array([len(c) for c in chunks])
        if len(sizes) == 0 or (sizes == 0).any():
            raise ValueError(f"every {what} track needs at least one chunk embedding")
        flat = np.concatenate([np.asarray(c, dtype=np.float32) for c in chunks])  # (N, D)
        flat /= np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
        return flat, np.concatenate([[0], np.cumsum(sizes)[:-1]])

    q, q_start = stack(query_chunks, "query")
    g, g_start = stack(gallery_chunks, "gallery")
    out = np.empty((len(query_chunks), len(gallery_chunks)), dtype=np.float32)
    q_end = np.append(q_start[1:], len(q))
    longest = int((q_end - q_start).max())
    tracks_per_block = max(1, BLOCK_ELEMENTS // (len(g) * longest))
    for lo in range(0, len(q_start), tracks_per_block):
        hi = min(lo + tracks_per_block, len(q_start))
        rows = q[q_start[lo]: q_end[hi - 1]]                             # (r, D)
        best = np.maximum.reduceat(rows @ g.T, g_start, axis=1)          # (r, n_gallery)
        out[lo:hi] = np.maximum.reduceat(best, q_start[lo:hi] - q_start[lo], axis=0)
    return 1.0 - out
