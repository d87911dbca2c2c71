"""Finding aligned chunks of two versions of a work, the middle step of coarse-to-fine
training [II-D].

The idea: embed every 15 s chunk (7.5 s hop) of each training recording with the coarse
model; for two versions of the same work, every chunk pair whose cosine similarity exceeds
a threshold is a match ``(p1, p2, δ = p2 - p1)``; the most frequent offset δ of that
recording pair is its offset Δ, and the matches with δ = Δ are its aligned chunk pairs,
whose start times the fine training extends into longer chunks. A Δ held by fewer than
``min_votes`` matches is not trusted (the pair stays unaligned; 1 = the paper's rule).

Chunk positions are the hop grid only (chunk ``k`` starts at frame ``k * hop_frames``), so
a chunk index is a time and δ counts hops; see :func:`grid_starts`. Per work the chunk
embeddings of all its recordings are stacked and compared with one matrix product,
computed in row blocks of at most ``BLOCK_ELEMENTS`` entries.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from coverhunter.features.chunking import chunk_starts, seconds_to_frames
from coverhunter.model import CoverHunterNet
from coverhunter.progress import track
from coverhunter.retrieval.inference import embed_chunks

# similarity-matrix entries computed at once (float32: 16 MiB; with its index temporaries
# about 0.25 GiB when every entry is a match); larger works go in row blocks
BLOCK_ELEMENTS = 1 << 22

ALIGNMENT_COLUMNS = ["work_id", "rec_a", "rec_b", "chunk_a", "chunk_b",
                     "start_a_s", "start_b_s", "similarity", "delta"]
SUMMARY_COLUMNS = ["work_id", "rec_a", "rec_b", "n_chunks_a", "n_chunks_b",
                   "matches", "delta", "aligned", "reason"]


class WorkChunks(NamedTuple):
    """One work's recordings and their grid-chunk embeddings, as :func:`align_work` takes them."""
    recording_ids: Sequence[Hashable]
    embeddings: Sequence[np.ndarray]     # per recording (n_chunks_i, D)
    starts_s: Sequence[np.ndarray]       # per recording (n_chunks_i,) chunk start, seconds


def grid_starts(n_frames: int, chunk_frames: int, hop_frames: int) -> np.ndarray:
    """Start frames of the hop-grid chunks of a sequence, shape ``(n_chunks,)``:
    ``k * hop_frames`` for every ``k`` whose full chunk fits.

    This is :func:`coverhunter.features.chunking.chunk_starts` without its tail chunk (the extra
    chunk flush with the end). The tail's start is off the grid, so its offset to another
    recording's chunk is not a whole number of hops and would not vote for the same δ as
    the grid chunks beside it. A sequence no longer than one chunk is one chunk at 0
    (the same rule as ``chunk_starts``): a short version can still be aligned, at δ = -p1.
    """
    starts = chunk_starts(n_frames, chunk_frames, hop_frames)
    return starts[starts % hop_frames == 0]   # the tail, when there is one, is never on the grid


class _Votes(NamedTuple):
    """Matches tallied per (recording pair, offset) group; tallies of parts add up."""
    key: np.ndarray       # (n_groups,) distinct _vote_key values, ascending
    count: np.ndarray     # (n_groups,) matches, float64 (exact integers)
    sim_sum: np.ndarray   # (n_groups,) summed similarity, float64


def _vote_key(pair: np.ndarray, delta: np.ndarray, max_offset: int) -> np.ndarray:
    """One int64 per (pair, δ) with ``|δ| <= max_offset``: ``pair * span + δ + max_offset``."""
    span = 2 * max_offset + 1
    return np.asarray(pair, np.int64) * span + np.asarray(delta, np.int64) + max_offset


def _tally(key: np.ndarray, count: np.ndarray, sim_sum: np.ndarray) -> _Votes:
    """Sum ``count`` and ``sim_sum`` over equal keys (per match: count 1, sim_sum = similarity)."""
    keys, group = np.unique(key, return_inverse=True)
    return _Votes(keys, np.bincount(group, weights=count, minlength=len(keys)),
                  np.bincount(group, weights=np.asarray(sim_sum, np.float64), minlength=len(keys)))


def _merge(votes: Sequence[_Votes]) -> _Votes:
    """One tally of several (one per row block)."""
    if not votes:
        return _Votes(np.empty(0, np.int64), np.empty(0), np.empty(0))
    return _tally(*(np.concatenate(part) for part in zip(*votes)))


def _pick_mode(votes: _Votes, max_offset: int, n_pairs: int,
               min_votes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's winning offset under the tie rule of :func:`mode_offsets`; a pair whose
    winner has fewer than ``min_votes`` matches is not found."""
    mode = np.zeros(n_pairs, dtype=np.int64)
    found = np.zeros(n_pairs, dtype=bool)
    if len(votes.key) == 0:
        return mode, found
    span = 2 * max_offset + 1
    g_pair, g_delta = votes.key // span, votes.key % span - max_offset   # (n_groups,)
    # each pair's groups best first; lexsort's last key is the primary one
    order = np.lexsort((g_delta, np.abs(g_delta), -votes.sim_sum, -votes.count, g_pair))
    sorted_pair = g_pair[order]
    best = order[np.r_[True, sorted_pair[1:] != sorted_pair[:-1]]]       # first group of a pair
    best = best[votes.count[best] >= min_votes]
    mode[g_pair[best]] = g_delta[best]
    found[g_pair[best]] = True
    return mode, found


def mode_offsets(pair: np.ndarray, delta: np.ndarray, similarity: np.ndarray,
                 n_pairs: int, min_votes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The offset Δ of each recording pair: the mode of the offsets of its matches.

    ``pair``, ``delta``, ``similarity``: ``(n_matches,)``, one entry per match (recording
    pair index in ``[0, n_pairs)``, offset ``p2 - p1``, cosine similarity).

    Tie rule (deterministic): among the offsets with the most matches, the one with the
    highest summed similarity; if still tied, the smallest ``|δ|``; then the smaller δ.

    Returns ``Δ (n_pairs,)`` int64 and ``found (n_pairs,)`` bool (False for a pair without
    matches, or whose Δ has fewer than ``min_votes`` of them; its Δ is 0 and meaningless).
    :func:`align_work` runs the same tally and pick, one row block at a time.
    """
    delta = np.asarray(delta, dtype=np.int64)
    max_offset = int(np.abs(delta).max()) if len(delta) else 0
    votes = _tally(_vote_key(pair, delta, max_offset), np.ones(len(delta)), similarity)
    return _pick_mode(votes, max_offset, n_pairs, min_votes)


def align_pairs(p1: np.ndarray, p2: np.ndarray, similarity: np.ndarray,
                threshold: float, min_votes: int = 1) -> tuple[int | None, np.ndarray]:
    """Align one recording pair from its chunk-pair list.

    ``p1``, ``p2``: ``(n,)`` chunk positions in the first and second recording;
    ``similarity``: ``(n,)`` their cosine similarities. Pairs with similarity > ``threshold``
    (compared in float32, as in :func:`align_work`) are matches; Δ is their offset mode
    (:func:`mode_offsets`). Returns Δ (None without matches, or when Δ has fewer than
    ``min_votes``) and the aligned pairs
    ``(n_aligned, 2)`` as ``(p1, p2)`` rows, in input order.
    """
    p1, p2 = np.asarray(p1, dtype=np.int64), np.asarray(p2, dtype=np.int64)
    similarity = np.asarray(similarity, dtype=np.float32)
    keep = similarity > np.float32(threshold)
    p1, p2 = p1[keep], p2[keep]
    delta = p2 - p1
    mode, found = mode_offsets(np.zeros(len(delta), dtype=np.int64), delta, similarity[keep], 1,
                               min_votes)
    if not found[0]:
        return None, np.empty((0, 2), dtype=np.int64)
    aligned = delta == mode[0]
    return int(mode[0]), np.stack([p1[aligned], p2[aligned]], axis=1)


def _check_work(recording_ids: Sequence[Hashable], embeddings: Sequence[np.ndarray],
                starts_s: Sequence[np.ndarray]) -> None:
    if not len(recording_ids) == len(embeddings) == len(starts_s):
        raise ValueError(f"{len(recording_ids)} recording ids, {len(embeddings)} embedding "
                         f"arrays and {len(starts_s)} start arrays: one of each per recording")
    if len(set(recording_ids)) != len(recording_ids):
        raise ValueError("recording ids of a work must be unique")
    dims = {e.shape[1] if np.ndim(e) == 2 else None for e in embeddings}
    if len(dims) > 1 or None in dims:
        raise ValueError(f"embeddings must be 2-D (n_chunks, D) with one D, got dims {dims}")
    for rid, e, s in zip(recording_ids, embeddings, starts_s):
        if len(e) == 0 or len(e) != len(s):
            raise ValueError(f"recording {rid!r}: {len(e)} chunk embeddings and {len(s)} "
                             "chunk starts (at least one chunk, one start per chunk)")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, np.finfo(np.float32).tiny)


def _alignment_table(work_id: Hashable, rec_a: np.ndarray, rec_b: np.ndarray,
                     chunk_a: np.ndarray, chunk_b: np.ndarray, start_a: np.ndarray,
                     start_b: np.ndarray, similarity: np.ndarray,
                     delta: np.ndarray) -> pd.DataFrame:
    """The alignment table, ``ALIGNMENT_COLUMNS`` with their dtypes (also when empty)."""
    return pd.DataFrame({
        "work_id": pd.Series([work_id] * len(rec_a), dtype=object),
        "rec_a": pd.Series(rec_a, dtype=object), "rec_b": pd.Series(rec_b, dtype=object),
        "chunk_a": np.asarray(chunk_a, dtype=np.int64),
        "chunk_b": np.asarray(chunk_b, dtype=np.int64),
        "start_a_s": np.asarray(start_a, dtype=np.float64),
        "start_b_s": np.asarray(start_b, dtype=np.float64),
        "similarity": np.asarray(similarity, dtype=np.float32),
        "delta": np.asarray(delta, dtype=np.int64)})


def _summary_table(work_id: Hashable, rec_a: np.ndarray, rec_b: np.ndarray, n_a: np.ndarray,
                   n_b: np.ndarray, matches: np.ndarray, delta: np.ndarray, found: np.ndarray,
                   aligned: np.ndarray, reason: Sequence[str]) -> pd.DataFrame:
    """The pair summary, ``SUMMARY_COLUMNS`` with their dtypes; Δ is <NA> where not ``found``."""
    mode = pd.array(np.asarray(delta, dtype=np.int64), dtype="Int64")
    mode[~np.asarray(found, dtype=bool)] = pd.NA
    return pd.DataFrame({
        "work_id": pd.Series([work_id] * len(rec_a), dtype=object),
        "rec_a": pd.Series(rec_a, dtype=object), "rec_b": pd.Series(rec_b, dtype=object),
        "n_chunks_a": np.asarray(n_a, dtype=np.int64),
        "n_chunks_b": np.asarray(n_b, dtype=np.int64),
        "matches": np.asarray(matches, dtype=np.int64),
        "delta": mode,
        "aligned": np.asarray(aligned, dtype=np.int64),
        "reason": pd.Series(list(reason), dtype=object)})


# long on purpose: the paper's steps over one similarity matrix in order; split, they would pass six arrays around
def align_work(work_id: Hashable, recording_ids: Sequence[Hashable],
               embeddings: Sequence[np.ndarray], starts_s: Sequence[np.ndarray],
               threshold: float, min_votes: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Align every pair of recordings of one work.

    ``embeddings[i]``: ``(n_chunks_i, D)`` grid-chunk embeddings of recording ``i`` (they
    are L2-normalised here, so dot products are cosine similarities); ``starts_s[i]``:
    ``(n_chunks_i,)`` their start times in seconds. A chunk pair is a match when its
    similarity is strictly greater than ``threshold`` (both float32); a pair whose Δ has
    fewer than ``min_votes`` matches gets no Δ and no aligned chunks.

    Returns two tables. Alignments, one row per aligned chunk pair (columns
    ``ALIGNMENT_COLUMNS``), ``chunk_b - chunk_a == delta`` (the pair's Δ). Summary, one row
    per unordered recording pair, ``rec_a`` before ``rec_b`` in the input order, including
    pairs without matches, whose ``reason`` names the threshold and the best similarity.
    Both are ordered by pair (then ``chunk_a``).

    Memory: one row block of the similarity matrix (at most ``BLOCK_ELEMENTS`` float32
    entries, or one row) with its temporaries, plus 12 bytes per match (row, column,
    similarity) and the tallies (one per recording pair and offset seen).
    """
    _check_work(recording_ids, embeddings, starts_s)
    n_rec = len(recording_ids)
    ids = np.empty(n_rec, dtype=object)
    ids[:] = list(recording_ids)
    counts = np.array([len(e) for e in embeddings], dtype=np.int64)   # (n_rec,)
    first = np.concatenate([[0], np.cumsum(counts)])                   # (n_rec + 1,) first row
    total = int(first[-1])
    rec = np.repeat(np.arange(n_rec), counts)                          # (total,) recording of a row
    chunk = np.arange(total) - first[rec]                              # (total,) chunk index
    start = np.concatenate([np.asarray(s, dtype=np.float64) for s in starts_s])  # (total,)
    emb = _unit_rows(np.concatenate(embeddings))                       # (total, D)

    pair_a, pair_b = np.triu_indices(n_rec, k=1)                       # (n_pairs,) a < b
    n_pairs = len(pair_a)
    pair_of = np.full((n_rec, n_rec), -1, dtype=np.int64)
    pair_of[pair_a, pair_b] = np.arange(n_pairs)
    best = np.full((n_rec, n_rec), -np.inf, dtype=np.float32)          # best similarity per pair

    max_offset = int(counts.max()) - 1                                 # |δ| <= max_offset
    rows_per_block = max(1, BLOCK_ELEMENTS // total)
    matches, votes = [], []       # per row block: (rows, cols, similarities), _Votes
    for lo in range(0, total, rows_per_block):
        hi = min(lo + rows_per_block, total)
        r_lo, r_hi = rec[lo], rec[hi - 1]             # recordings of the block's rows
        col0 = first[r_lo + 1]                        # columns of later recordings only
        if col0 >= total:
            break
        sim = emb[lo:hi] @ emb[col0:].T               # (hi - lo, total - col0)
        r, c = np.nonzero(sim > np.float32(threshold))
        s = sim[r, c]                                 # (n,) float32
        r, c = r + lo, c + col0
        later = rec[c] > rec[r]                       # drop same-recording entries
        r, c, s = r[later].astype(np.int32), c[later].astype(np.int32), s[later]
        matches.append((r, c, s))
        votes.append(_tally(_vote_key(pair_of[rec[r], rec[c]], chunk[c] - chunk[r], max_offset),
                            np.ones(len(r)), s))
        # best similarity of each (row recording, column recording) block
        col_seg = first[r_lo + 1: n_rec] - col0
        row_seg = np.concatenate([[0], first[r_lo + 1: r_hi + 1] - lo])
        block_best = np.maximum.reduceat(np.maximum.reduceat(sim, col_seg, axis=1), row_seg, axis=0)
        view = best[r_lo: r_hi + 1, r_lo + 1:]
        np.maximum(view, block_best, out=view)

    mode, found = _pick_mode(_merge(votes), max_offset, n_pairs, min_votes)
    n_matches = np.zeros(n_pairs, dtype=np.int64)
    aligned = []                                      # per block (rows, cols, similarities)
    for r, c, s in matches:
        pair = pair_of[rec[r], rec[c]]
        n_matches += np.bincount(pair, minlength=n_pairs)
        keep = (chunk[c] - chunk[r] == mode[pair]) & found[pair]
        aligned.append((r[keep], c[keep], s[keep]))
    r, c, s = (np.concatenate(x) for x in zip(*aligned)) if aligned else \
        (np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.float32))
    pair = pair_of[rec[r], rec[c]]
    order = np.lexsort((chunk[r], pair))
    r, c, s, pair = r[order], c[order], s[order], pair[order]
    table = _alignment_table(work_id, ids[rec[r]], ids[rec[c]], chunk[r], chunk[c],
                             start[r], start[c], s, mode[pair])

    n_aligned = np.bincount(pair, minlength=n_pairs)
    best_pair = best[pair_a, pair_b]
    reason = ["" if n else f"no chunk pair above threshold {threshold:g} (best similarity "
              f"{b:.4f})" if not m else f"no offset held by align.min_votes = {min_votes} of "
              f"its {m} matches" for n, m, b in zip(n_aligned, n_matches, best_pair)]
    summary = _summary_table(work_id, ids[pair_a], ids[pair_b], counts[pair_a], counts[pair_b],
                             n_matches, mode, found, n_aligned, reason)
    return table, summary


def align_catalogue(works: Mapping[Hashable, WorkChunks] | Iterable[tuple[Hashable, WorkChunks]],
                    threshold: float, total: int | None = None,
                    progress: bool = True, min_votes: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`align_work` for each work: ``works`` maps (or yields, e.g. lazily embedded)
    ``work_id → WorkChunks``. Returns the concatenated alignment and summary tables."""
    items = works.items() if isinstance(works, Mapping) else works
    if total is None and hasattr(works, "__len__"):
        total = len(works)
    tables, summaries = [], []
    for work_id, (recording_ids, embeddings, starts_s) in track(items, total, "align", "work", progress):
        table, summary = align_work(work_id, recording_ids, embeddings, starts_s, threshold,
                                    min_votes)
        tables.append(table)
        summaries.append(summary)
    return _concat(tables, _alignment_table(None, *[np.empty(0)] * 8)), \
        _concat(summaries, _summary_table(None, *[np.empty(0)] * 9))


def _concat(frames: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    """Row-concatenate the non-empty frames (empty ones could change the dtypes)."""
    return pd.concat([f for f in frames if len(f)] or [empty], ignore_index=True)


def embed_grid_chunks(model: CoverHunterNet, features: Sequence[np.ndarray], chunk_s: float,
                      hop_s: float, frame_rate: float, batch_chunks: int,
                      device: torch.device | str = "cpu", progress: bool = False,
                      ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Embed the grid chunks (:func:`grid_starts`) of each recording's features
    ``(frames, bins)``.

    Returns per recording the L2-normalised embeddings ``(n_chunks_i, embedding_dim)``
    float32 and the chunk start times ``(n_chunks_i,)`` in seconds (start frame /
    ``frame_rate``: with a hop of 7.5 s at 25 frames/s the hop is 188 frames, 7.52 s).
    """
    if len(features) == 0:
        return [], []
    size = seconds_to_frames(chunk_s, frame_rate)
    hop = seconds_to_frames(hop_s, frame_rate)
    starts = [grid_starts(len(f), size, hop) for f in features]       # per recording (n_i,)
    chunks = [f[s: s + size] for f, st in zip(features, starts) for s in st]  # views
    emb = embed_chunks(model, chunks, batch_chunks, device, progress)           # (sum n_i, D)
    split = np.cumsum([len(s) for s in starts])[:-1]
    return np.split(emb, split), [s / frame_rate for s in starts]
