"""Chunk search of the catalogue index: per-query time, recall@10 against exact search and
memory, for `flat`, `ivf` and `hnsw` (each with float vectors and with 8-bit codes whose
`index.refine` best candidates are re-scored exactly) at several catalogue sizes.

    python benchmarks/bench_search.py [--sizes 10000 100000 1000000] [--queries 200]
                                      [--structure measured|isotropic]
    python benchmarks/bench_search.py --save-stats artifacts/index   # re-measure the statistics

The vectors are synthetic, 128-d (model.embedding_dim), 40 chunks per work, with one of two
neighbour structures (:class:`SyntheticWorks`): ``measured`` draws work centres and chunk
deviations with the covariances of a trained model's catalogue vectors (shipped in
benchmarks/data/embedding_stats.npz); ``isotropic`` makes each work a random direction in
all 128 dimensions (a harder case than trained embeddings). Queries are fresh chunks of
catalogued works. One "query" here is one query chunk; a
3-minute recording with 45 s chunks every 15 s is 10 of them. Times are the median of
three runs over all queries, per query, single process (``--threads``).
"""
from __future__ import annotations

import argparse
import dataclasses
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
NOISE = 0.9               # isotropic: chunk = direction + NOISE * N(0, I/d), cosine to its work's ~0.75
STATS = ROOT / "benchmarks" / "data" / "embedding_stats.npz"
STRUCTURES = ("measured", "isotropic")


class SyntheticWorks:
    """Works and their chunk vectors, with one of two neighbour structures:

    ``isotropic``: each work a random unit direction in all ``d`` dimensions, a chunk that
    direction plus noise (every dimension equally used: the hardest case for a graph or
    cells, and unlike trained embeddings);
    ``measured``: work centres and chunk deviations drawn from Gaussians with the covariances
    measured on a trained model's catalogue vectors (``STATS``, :func:`save_stats`): the
    spectrum real embeddings have (most of the variance in about 20 directions)."""

    def __init__(self, n_works: int, d: int, rng: np.random.Generator, structure: str = "measured"):
        self.rng, self.structure, self.n = rng, structure, n_works
        if structure == "isotropic":
            centres = rng.normal(size=(n_works, d))
            self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        elif structure == "measured":
            st = np.load(STATS)
            if st["between"].shape[0] != d:
                raise ValueError(f"{STATS} holds {st['between'].shape[0]}-d statistics, not {d}-d")
            self.centres = rng.multivariate_normal(st["mean"], st["between"], n_works, method="eigh")
            # chunk deviation = N(0, I) @ L.T, with L L.T the within-work covariance
            self.within_t = np.linalg.cholesky(st["within"] + 1e-6 * np.eye(d)).T.astype(np.float32)
        else:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")
        self.centres = self.centres.astype(np.float32)

    def chunks(self, works: np.ndarray) -> np.ndarray:
        """Fresh unit chunk vectors ``(len(works), d)`` of the given works."""
        d = self.centres.shape[1]
        noise = self.rng.normal(size=(len(works), d)).astype(np.float32)
        if self.structure == "isotropic":
            x = self.centres[works] + NOISE * noise / np.sqrt(d)
        else:
            x = self.centres[works] + noise @ self.within_t
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def vectors(n: int, d: int, rng: np.random.Generator, structure: str = "measured"
            ) -> tuple[np.ndarray, SyntheticWorks]:
    """``n`` catalogue chunk vectors of ``n / CHUNKS_PER_WORK`` works, and the works."""
    works = SyntheticWorks(max(1, n // CHUNKS_PER_WORK), d, rng, structure)
    step = 1 << 18                                    # in blocks: the noise of 4M vectors is 2 GB
    x = np.concatenate([works.chunks(rng.integers(0, works.n, min(step, n - i))) for i in range(0, n, step)])
    return x, works


def save_stats(index_dir: Path) -> None:
    """Measure ``STATS`` from a catalogue index's vectors (e.g. the demo's, artifacts/index):
    the mean and covariance of the works' centres, and the covariance of each chunk's
    deviation from its work's centre."""
    index = ChunkIndex.load(index_dir)
    v, works = np.asarray(index.vectors, np.float64), index.tags["work_id"].to_numpy()
    labels, inverse = np.unique(works, return_inverse=True)
    centres = np.stack([v[inverse == i].mean(0) for i in range(len(labels))])
    STATS.parent.mkdir(exist_ok=True)
    np.savez(STATS, mean=centres.mean(0), between=np.cov(centres.T), within=np.cov((v - centres[inverse]).T),
             source=str(index_dir), model_sha1=index.meta.get("model_sha1", ""), n_works=len(labels),
             n_vectors=len(v))


def index_of(x: np.ndarray, kind: str, codec: str, p) -> tuple[ChunkIndex, float]:
    tags = pd.DataFrame({"recording_id": np.arange(len(x)) // 10, "work_id": 0, "start_s": 0.0, "end_s": 45.0})
    tags["recording_id"] = tags["recording_id"].astype(str)
    spec = dataclasses.replace(IndexSpec.from_params(p.index), kind=kind, codec=codec)
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
    ap.add_argument("--codecs", nargs="+", default=["float", "sq8"], help="for ivf and hnsw")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--structure", choices=STRUCTURES, default="measured")
    ap.add_argument("--save-stats", type=Path, metavar="INDEX_DIR",
                    help=f"measure {STATS.relative_to(ROOT)} from this index's vectors, then stop")
    args = ap.parse_args()
    if args.save_stats:
        return save_stats(args.save_stats)
    faiss.omp_set_num_threads(args.threads)
    p = load_params(ROOT / "params.yaml")
    d, k = p.model.embedding_dim, p.index.k
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        x, works = vectors(n, d, rng, args.structure)
        q = works.chunks(rng.integers(0, works.n, args.queries))
        exact, _ = index_of(x, "flat", "float", p)
        flat_ms = per_query_ms(exact, q, k)
        setups = [(kd, c) for kd in args.kinds for c in (["float"] if kd == "flat" else args.codecs)]
        for kind, codec in setups:
            index, build_s = (exact, 0.0) if kind == "flat" else index_of(x, kind, codec, p)
            ms = flat_ms if kind == "flat" else per_query_ms(index, q, k)
            mb = len(faiss.serialize_index(index.faiss)) / 2**20
            rows.append({"vectors": n, "kind": kind, "codec": codec, "build s": round(build_s, 1),
                         f"ms / query chunk (k={k})": round(ms, 3), "x flat": round(flat_ms / ms, 1),
                         "recall@10": round(recall_at(index, exact, q), 3), "index MB": round(mb, 1)})
            print(rows[-1], flush=True)
    print(f"\n{d}-d vectors, {args.queries} query chunks, {args.threads} thread(s); "
          f"ivf nlist {p.index.nlist} nprobe {p.index.nprobe}, hnsw M {p.index.hnsw_m} efSearch {p.index.ef_search}, "
          f"sq8 refine {p.index.refine}\n")
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
