"""Chunk search of the catalogue index: per-query time, recall@10 against exact search and
memory, for `flat`, `ivf` and `hnsw` at several catalogue sizes.

    python benchmarks/bench_search.py [--sizes 10000 100000 1000000] [--queries 200]

The vectors are synthetic with a cover-like neighbour structure: each work is a random
unit direction, each of its chunks that direction plus noise (so a work's chunks are each
other's nearest neighbours, as trained embeddings are), 128-d (model.embedding_dim).
Queries are fresh chunks of catalogued works. One "query" here is one query chunk; a
3-minute recording with 45 s chunks every 15 s is 10 of them. Times are the median of
three runs over all queries, per query, single process (``--threads``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coverhunter.params import load_params  # noqa: E402
from coverhunter.retrieval.index import ChunkIndex, IndexSpec  # noqa: E402
from coverhunter.retrieval.search import recall_at  # noqa: E402

CHUNKS_PER_WORK = 40      # e.g. 4 versions x 10 chunks
NOISE = 0.9               # chunk = direction + NOISE * N(0, I/d): cosine to its work's direction ~0.75


def vectors(n: int, d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    works = rng.normal(size=(max(1, n // CHUNKS_PER_WORK), d)).astype(np.float32)
    works /= np.linalg.norm(works, axis=1, keepdims=True)
    label = rng.integers(0, len(works), n)
    x = works[label] + NOISE * rng.normal(size=(n, d)).astype(np.float32) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), works


def index_of(x: np.ndarray, kind: str, p) -> tuple[ChunkIndex, float]:
    tags = pd.DataFrame({"recording_id": np.arange(len(x)) // 10, "work_id": 0, "start_s": 0.0, "end_s": 45.0})
    tags["recording_id"] = tags["recording_id"].astype(str)
    i = p.index
    spec = IndexSpec(kind, i.nlist, i.nprobe, i.hnsw_m, i.ef_search, i.auto_flat_below)
    t0 = time.perf_counter()
    index = ChunkIndex(x, tags, spec, {})
    return index, time.perf_counter() - t0


def per_query_ms(index: ChunkIndex, q: np.ndarray, k: int) -> float:
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        for row in q:                          # one query chunk at a time, as identify sends them
            index.search(row[None], k)
        runs.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(runs)) / len(q)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--kinds", nargs="+", default=["flat", "ivf", "hnsw"])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.threads)
    p = load_params(ROOT / "params.yaml")
    d, k = p.model.embedding_dim, p.index.k
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        x, works = vectors(n, d, rng)
        q = works[rng.integers(0, len(works), args.queries)] + NOISE * rng.normal(size=(args.queries, d)) / np.sqrt(d)
        q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
        exact, _ = index_of(x, "flat", p)
        flat_ms = per_query_ms(exact, q, k)
        for kind in args.kinds:
            index, build_s = (exact, 0.0) if kind == "flat" else index_of(x, kind, p)
            ms = flat_ms if kind == "flat" else per_query_ms(index, q, k)
            mb = len(faiss.serialize_index(index.faiss)) / 2**20
            rows.append({"vectors": n, "kind": kind, "build s": round(build_s, 1),
                         f"ms / query chunk (k={k})": round(ms, 3), "x flat": round(flat_ms / ms, 1),
                         "recall@10": round(recall_at(index, exact, q), 3), "index MB": round(mb, 1)})
            print(rows[-1], flush=True)
    print(f"\n{d}-d vectors, {args.queries} query chunks, {args.threads} thread(s); "
          f"ivf nlist {p.index.nlist} nprobe {p.index.nprobe}, hnsw M {p.index.hnsw_m} efSearch {p.index.ef_search}\n")
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
