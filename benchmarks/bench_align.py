"""Chunk alignment cost [II-D]: ``align_work`` on synthetic works of many versions, and
embedding the 15 s grid chunks of training recordings with the params.yaml model and the
paper-size model; the last column adds both for a work of 100 versions.

A synthetic work: shared "song" chunk embeddings (random unit vectors, dimension 128);
one section is repeated, so two versions also match at offsets other than their true one;
each version is a window of the song starting at a random chunk offset, with noise added
and a share of its chunks replaced by unrelated material, so every pair's true Δ is known
(the difference of the two window offsets) and the table checks it was found. Peak memory
is this process's so far (it includes torch). Usage:
    python benchmarks/bench_align.py [--versions 10 30 100] [--repeats 3] [--embed-recordings 4]
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from common import ROOT, best_of, peak_rss_mib, table

from coverhunter.align.alignment import align_work, embed_grid_chunks, grid_starts  # noqa: E402
from coverhunter.features.chunking import seconds_to_frames  # noqa: E402
from coverhunter.model import CoverHunterNet  # noqa: E402
from coverhunter.params import load_params  # noqa: E402

DIM = 128            # embedding_dim of the paper model
MAX_SHIFT = 20       # versions start up to this many chunks apart in the shared song
NOISE = 0.02         # per-dimension noise: similarity of matching chunks ≈ 0.95
UNRELATED = 0.3      # share of each version's chunks that are unrelated material
REPEAT = 8           # the song's chunks 8..15 repeat chunks 0..7 (matches at other offsets)


def synthetic_work(rng: np.random.Generator, n_versions: int, n_chunks: int,
                   hop_s: float) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Embeddings (n_chunks, DIM) and starts of each version, and each version's offset."""
    song = rng.normal(size=(n_chunks + MAX_SHIFT, DIM))
    song[REPEAT: 2 * REPEAT] = song[:REPEAT]
    offsets = rng.integers(0, MAX_SHIFT + 1, size=n_versions)
    embeddings = []
    for o in offsets:
        e = song[o: o + n_chunks] / np.sqrt(DIM) + rng.normal(scale=NOISE, size=(n_chunks, DIM))
        other = rng.random(n_chunks) < UNRELATED
        e[other] = rng.normal(size=(int(other.sum()), DIM)) / np.sqrt(DIM)
        embeddings.append((e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32))
    starts = [np.arange(n_chunks) * hop_s for _ in range(n_versions)]
    return embeddings, starts, offsets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--versions", type=int, nargs="+", default=[10, 30, 100])
    ap.add_argument("--song-s", type=float, default=300.0, help="length of every version")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--embed-recordings", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(2)
    params = load_params(ROOT / "params.yaml")
    fps, tr = params.features.frame_rate, params.train
    size, hop = seconds_to_frames(tr.chunk_s, fps), seconds_to_frames(tr.hop_s, fps)
    n_frames = round(args.song_s * fps)
    n_chunks = len(grid_starts(n_frames, size, hop))
    threshold = params.align.threshold
    print(f"{args.song_s:.0f} s versions: {n_chunks} grid chunks of {tr.chunk_s:g} s "
          f"(hop {hop} frames), threshold {threshold}, torch threads {torch.get_num_threads()}")

    rows, align_100 = [], float("nan")      # align_100: seconds to align a 100-version work
    rng = np.random.default_rng(0)
    for n in args.versions:
        emb, starts, offsets = synthetic_work(rng, n, n_chunks, hop / fps)
        ids = [f"v{i}" for i in range(n)]
        run = lambda: align_work("w", ids, emb, starts, threshold)  # noqa: E731
        seconds = best_of(run, args.repeats)
        align_100 = seconds if n == 100 else align_100
        aligned, summary = run()
        truth = offsets[[ids.index(r) for r in summary["rec_a"]]] \
            - offsets[[ids.index(r) for r in summary["rec_b"]]]
        correct = float((summary["delta"].to_numpy(dtype=float, na_value=np.nan) == truth).mean())
        n_pairs = len(summary)
        rows.append([n, n * n_chunks, n_pairs, int(summary["matches"].sum()), len(aligned),
                     f"{100 * correct:.1f}", seconds, n_pairs / seconds, n / seconds,
                     peak_rss_mib()])
    print(table(["versions", "chunks", "rec. pairs", "matches", "aligned", "Δ correct %",
                 "seconds", "pairs/s", "recordings/s", "peak RSS MiB"], rows))

    if args.embed_recordings:
        feats = [np.random.default_rng(i).normal(size=(n_frames, params.features.n_bins))
                 .astype(np.float32) for i in range(args.embed_recordings)]
        sizes = {"params.yaml": params.model,
                 "paper size": dataclasses.replace(params.model, d_model=128, ff_dim=256,
                                                   n_blocks=6, subsample_channels=128)}
        emb_rows = []
        for name, mp in sizes.items():
            torch.manual_seed(0)
            model = CoverHunterNet(params.features.n_bins, mp, 0).eval()
            embed = lambda f: embed_grid_chunks(model, f, tr.chunk_s, tr.hop_s, fps,  # noqa: E731
                                                params.align.batch_chunks, args.device)
            embed(feats[:1])                                            # warm-up
            t0 = time.perf_counter()
            emb, _ = embed(feats)
            seconds = time.perf_counter() - t0
            chunks = sum(len(e) for e in emb)
            per_rec = seconds / len(feats)
            emb_rows.append([name, args.device, len(feats), chunks, seconds, 1 / per_rec,
                             len(feats) * args.song_s / seconds,
                             f"{(100 * per_rec + align_100) / 60:.1f}"])
        print()
        print(table(["embedding model", "device", "recordings", "chunks", "seconds",
                     "recordings/s", "× real time", "100-version work: embed + align, min"],
                    emb_rows))

if __name__ == "__main__":
    main()
