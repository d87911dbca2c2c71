"""Sharded search, for galleries beyond one machine's memory: the catalogue split by
recording into shards, each a :class:`ChunkIndex` of its own (on this machine, or behind
a service on another), and their top-k lists merged into the one list a single index
would give.

Merging is exact: the k best of the union of each shard's k best are the k best of the
whole, so with exact (flat) shards the ranking equals one flat index's, ties broken by
the global row as faiss breaks them.
"""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from coverhunter.retrieval.index import ChunkIndex


def merge_top_k(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of several shards' results, each ``(similarities, rows)`` of shape
    ``(m, k_i)`` with rows already global (-1 for an empty slot). Returns ``(m, k)``."""
    sims = np.concatenate([p[0] for p in parts], axis=1)          # (m, Σ k_i)
    rows = np.concatenate([p[1] for p in parts], axis=1)
    sims = np.where(rows < 0, -np.inf, sims)
    order = np.lexsort((rows, -sims), axis=1)[:, :k]              # best first, then lower row
    return np.take_along_axis(sims, order, 1), np.take_along_axis(rows, order, 1)


def split_by_recording(index: ChunkIndex, n_shards: int) -> list[ChunkIndex]:
    """``n_shards`` indexes whose union is ``index``, each recording whole in one of them
    (recordings dealt round-robin in index order, so shard sizes differ by at most one)."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    recordings = index.recordings()
    shards = []
    for s in range(n_shards):
        shards.append(index.subset(set(recordings[s::n_shards])))
    return shards


class ShardedIndex:
    """Several :class:`ChunkIndex` shards searched as one (threads: faiss releases the GIL).

    Rows are global: shard ``i``'s row ``r`` is ``offsets[i] + r``, and ``tags`` lists
    every shard's tags in that order."""

    def __init__(self, shards: Sequence[ChunkIndex]):
        if not shards:
            raise ValueError("a sharded index needs at least one shard")
        dims = {s.vectors.shape[1] for s in shards if len(s)}
        if len(dims) > 1:
            raise ValueError(f"shards hold vectors of different sizes: {sorted(dims)}")
        self.shards = list(shards)
        self.offsets = np.cumsum([0, *[len(s) for s in shards[:-1]]])
        self.tags = pd.concat([s.tags for s in shards], ignore_index=True)

    @classmethod
    def load(cls, folders: Sequence[str | Path]) -> ShardedIndex:
        return cls([ChunkIndex.load(f) for f in folders])

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`ChunkIndex.search`, over every shard: ``(m, k)`` similarities and rows."""
        k = min(k, len(self))
        with ThreadPoolExecutor(max_workers=len(self.shards)) as pool:
            found = list(pool.map(lambda s: s.search(queries, k), self.shards))
        parts = [(sims, np.where(rows >= 0, rows + off, -1)) for (sims, rows), off in zip(found, self.offsets)]
        return merge_top_k(parts, k)
