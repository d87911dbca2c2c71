"""Query latency, the paper's Table III on this machine: one 3-minute query, from the audio
file to the ranked works, against catalogues of 10k, 100k and 1M tracks.

    python benchmarks/bench_latency.py [--tracks 10000 100000 1000000] [--repeats 7]
                                       [--structure measured|isotropic] [--ef-search 128 256]

Steps, as `coverhunter identify` runs them (coverhunter/retrieval/search.py):
  decode    the file (44.1 kHz stereo FLAC) to 16 kHz mono (and, for comparison, the same
            query already at 16 kHz mono as WAV: what a client resampling before it sends saves);
  CQT       the log-CQT, with each front end (`features.cqt`);
  inference the paper-size encoder (width 128, feed-forward 256, 6 blocks) on the query's
            45 s chunks without overlap (five: four and a short tail), `model.frame_pool` 3 and 1,
            on torch and on ONNX Runtime (`evaluate.runtime`)
            (identify's default chunking, `index.hop_s: 15`, embeds about twice as many);
  retrieval chunk search (k = index.k) plus the exact re-ranking of a shortlist (`rank`),
            with `fusion.weight` > 0 also the query's 2DFTM vector (`2DFTM` row) and the
            shortlist re-ranked by the fused score (coverhunter/retrieval/fusion.py), then by
            mutual neighbours (`rerank:`; its share measured against the same ranking without it).
The catalogue's vectors are synthetic (bench_search.py's ``--structure``: by default with
the covariances measured on a trained model's catalogue vectors), 4 per track (45 s chunks
of a 3-minute track); the index kind is
params.yaml's `index:` (`kind: auto`: flat below `auto_flat_below` vectors, else HNSW over
`codec` 8-bit codes whose `refine` best candidates are re-scored with the float vectors).
The index is saved and loaded back as `coverhunter identify` loads it: the faiss structure
in memory, the float vectors memory-mapped from disk. Recall@10 is against exact search,
over 200 chunks of catalogued works; memory is the faiss structure (a flat index holds the
float vectors themselves); disk is the float vectors file, and with fusion the tracks'
2DFTM vectors (synthetic too, memory-mapped: a query reads its shortlist's). Times are the minimum and median
of ``--repeats`` runs, the steps interleaved round by round in one process; torch and faiss
use every core.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import soundfile as sf
import torch
from bench_search import STRUCTURES, SyntheticWorks, vectors
from common import ROOT, table

from coverhunter.features.audio import load_audio  # noqa: E402
from coverhunter.features.cqt import CQTFrontEnd, extract_cqt  # noqa: E402
from coverhunter.model import CoverHunterNet  # noqa: E402
from coverhunter.model.runtime import RUNTIMES, for_runtime  # noqa: E402
from coverhunter.params import load_params  # noqa: E402
from coverhunter.retrieval.centring import mean_vector  # noqa: E402
from coverhunter.retrieval.fusion import Fusion, twodftm_vectors  # noqa: E402
from coverhunter.retrieval.index import ChunkIndex, IndexSpec  # noqa: E402
from coverhunter.retrieval.search import chunk_vectors, rank, recall_at  # noqa: E402

PAPER = {"decode + CQT": 192.0, "inference": 54.0, "retrieval": 70.0, "total": 316.0}  # Table III, ms
QUERY_S, CHUNK_S, CHUNKS_PER_TRACK = 180.0, 45.0, 4
PAPER_MODEL = {"d_model": 128, "ff_dim": 256, "n_blocks": 6, "subsample_channels": 128}


def query_file(folder: Path) -> Path:
    """A 3-minute 44.1 kHz stereo FLAC: a random melody of harmonic tones over a drone."""
    rate, rng = 44100, np.random.default_rng(0)
    t = np.arange(int(0.4 * rate)) / rate
    notes = []
    for pitch in rng.integers(55, 80, int(QUERY_S / 0.4)):
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        notes.append(sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3)) * np.exp(-3 * t))
    x = 0.2 * np.concatenate(notes)
    x += 0.05 * np.sin(2 * np.pi * 110.0 * np.arange(len(x)) / rate)
    path = folder / "query.flac"
    sf.write(path, np.stack([x, 0.9 * x], axis=1).astype(np.float32), rate)
    return path


def query_16k_wav(flac: Path, sample_rate: int) -> Path:
    """The same query as the front end's input would be: 16 kHz mono 16-bit WAV (what a
    client that resamples before sending saves the server)."""
    path = flac.with_name("query_16k.wav")
    sf.write(path, load_audio(flac, sample_rate), sample_rate, subtype="PCM_16")
    return path


def gallery(n_tracks: int, d: int, p, rng: np.random.Generator, folder: Path, structure: str
            ) -> tuple[ChunkIndex, ChunkIndex, float, SyntheticWorks]:
    """The params' index over ``n_tracks`` synthetic tracks (saved to ``folder`` and loaded
    back), an exact one beside it, the build time (s) and the synthetic works."""
    x, works = vectors(n_tracks * CHUNKS_PER_TRACK, d, rng, structure)
    track = np.arange(len(x)) // CHUNKS_PER_TRACK
    tags = pd.DataFrame({"recording_id": track.astype(str), "work_id": (track // 4).astype(str),
                         "start_s": (np.arange(len(x)) % CHUNKS_PER_TRACK) * CHUNK_S})
    tags["end_s"] = tags["start_s"] + CHUNK_S
    meta = {"chunk_s": CHUNK_S, "hop_s": CHUNK_S}
    twodftm = unit_rows(n_tracks, 12 * p.baselines[p.fusion.profile].patch_frames, rng) \
        if p.fusion.weight > 0 else None
    t0 = time.perf_counter()
    index = ChunkIndex(x, tags, IndexSpec.from_params(p.index), meta, twodftm=twodftm)
    build_s = time.perf_counter() - t0
    index.save(folder)
    del index
    index = ChunkIndex.load(folder)
    exact = ChunkIndex(x, tags, IndexSpec("flat", 1, 1, 1, 1, 1), meta)
    return index, exact, build_s, works


def unit_rows(n: int, dim: int, rng: np.random.Generator, block: int = 100_000) -> np.ndarray:
    """``(n, dim)`` random non-negative unit float32 rows (2DFTM vectors are magnitudes)."""
    out = np.empty((n, dim), np.float32)
    for lo in range(0, n, block):
        x = np.abs(rng.standard_normal((min(block, n - lo), dim), dtype=np.float32))
        out[lo:lo + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def catalogue_rows(n: int, d: int, p, rng: np.random.Generator, folder: Path, structure: str,
                   n_chunks: int, starts: np.ndarray, repeats: int, ef_searches: list[int]) -> list[dict]:
    """Size, index kind, memory MB, disk MB, recall@10 and retrieval ms for a catalogue of
    ``n`` tracks, queried by ``n_chunks`` chunks of one catalogued work; an HNSW index once
    per search width in ``ef_searches`` (the params' own when empty)."""
    index, exact, build_s, works = gallery(n, d, p, rng, folder, structure)
    print(f"{n:,} tracks: index built in {build_s:.0f} s", flush=True)
    # the query's chunks as a new version of a catalogued work would give them (the
    # untrained network's own vectors sit far from every work)
    queries = works.chunks(np.full(n_chunks, rng.integers(0, works.n)))
    probes = works.chunks(rng.integers(0, works.n, 200))
    codes = " over 8-bit codes, re-scored" if index.spec.compressed(len(index)) else ""
    codes += ", fused" if index.twodftm is not None else ""
    # the means are measured on a real catalogue; the time does not depend on them
    fusion = Fusion(p.fusion.weight, 0.5, 0.05, p.baselines[p.fusion.profile],
                    mean_vector(index.twodftm[:1000]) if p.fusion.centre else None) \
        if index.twodftm is not None else None
    q_twodftm = None if fusion is None else index.twodftm[0]
    rows = []
    for ef in (ef_searches or [p.index.ef_search]) if index.kind == "hnsw" else [None]:
        kind = index.kind + codes
        if ef is not None:
            faiss.downcast_index(index.faiss).hnsw.efSearch = ef
            kind = f"{index.kind} ef_search {ef}{codes}"
        times: dict[str, list[float]] = {}
        for _ in range(repeats + 1):
            for name, rerank in (("retrieval", p.rerank), ("without re-ranking", None)):
                timed(lambda: rank(index, queries, starts, QUERY_S, p.index.k, p.index.shortlist, None, p.index.top,
                                   fusion, q_twodftm, rerank), times, name)
        rows.append({"catalogue": f"{len(index):,} vectors", "index": kind,
                     "memory MB": round(len(faiss.serialize_index(index.faiss)) / 2**20),
                     "disk MB": round((index.vectors.nbytes + (0 if index.twodftm is None else
                                                               index.twodftm.nbytes)) / 2**20),
                     "recall@10": round(recall_at(index, exact, probes), 3),
                     "retrieval": round(min(times["retrieval"][1:]), 2),
                     "re-ranking": round(min(times["retrieval"][1:]) - min(times["without re-ranking"][1:]), 2)})
    return rows


def timed(fn, results: dict, name: str):
    t0 = time.perf_counter()
    out = fn()
    results.setdefault(name, []).append(1e3 * (time.perf_counter() - t0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--structure", choices=STRUCTURES, default="measured",
                    help="the catalogue vectors' neighbour structure (bench_search.py)")
    ap.add_argument("--ef-search", type=int, nargs="+", default=[],
                    help="HNSW search widths to measure on one build (default: index.ef_search)")
    args = ap.parse_args()
    p = load_params(ROOT / "params.yaml")
    torch.manual_seed(0)
    nets = {}
    for fp in (3, 1):
        net = CoverHunterNet(p.features.n_bins, dataclasses.replace(p.model, frame_pool=fp, **PAPER_MODEL), 0).eval()
        nets |= {(fp, runtime): for_runtime(net, runtime) for runtime in RUNTIMES}
    fronts = {kind: CQTFrontEnd(dataclasses.replace(p.features, cqt=kind)) for kind in ("nnaudio", "multirate")}
    fps, d = p.features.frame_rate, PAPER_MODEL["d_model"]
    steps: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        path = query_file(Path(tmp))
        wav = query_16k_wav(path, p.features.sample_rate)
        for _ in range(args.repeats + 1):                  # the first round warms up, then dropped
            timed(lambda: load_audio(wav, p.features.sample_rate), steps, "decode, 16 kHz mono WAV")
            audio = timed(lambda: load_audio(path, p.features.sample_rate), steps, "decode")
            for kind, front in fronts.items():
                feats = timed(lambda: extract_cqt([audio], front)[0], steps, f"CQT {kind}")
            if p.fusion.weight > 0:
                timed(lambda: twodftm_vectors([feats], p.baselines[p.fusion.profile], p.features.bins_per_octave),
                      steps, "2DFTM of the query (late fusion)")
            for (fp, runtime), net in nets.items():
                q, starts = timed(lambda: chunk_vectors(net, feats, CHUNK_S, CHUNK_S, fps, 8), steps,
                                  f"inference frame_pool {fp}, {runtime}")
    parts = {name: (min(ms[1:]), statistics.median(ms[1:])) for name, ms in steps.items()}
    print(f"\nOne {QUERY_S:.0f} s query ({len(q)} chunks of {CHUNK_S:.0f} s), {torch.get_num_threads()} "
          f"torch thread(s), ms (minimum / median of {args.repeats}):\n")
    print(table(["step", "min ms", "median ms", "x real time (min)"],
                [[n, round(a, 1), round(b, 1), round(1e3 * QUERY_S / a)] for n, (a, b) in parts.items()]))

    rng = np.random.default_rng(0)
    rows = [["paper (2-core Xeon, ScaNN)", "1M", "ScaNN", "", "", "", PAPER["decode + CQT"], PAPER["inference"],
             PAPER["retrieval"], "", PAPER["total"]]]
    # the totals use params.yaml's front end, frame pooling and runtime: what `identify` runs
    pre = parts["decode"][0] + parts[f"CQT {p.features.cqt}"][0]
    pre_wav = parts["decode, 16 kHz mono WAV"][0] + parts[f"CQT {p.features.cqt}"][0]
    infer = parts[f"inference frame_pool {p.model.frame_pool}, {p.evaluate.runtime}"][0]
    fuse = parts["2DFTM of the query (late fusion)"][0] if p.fusion.weight > 0 else 0.0   # counted as retrieval
    for n in args.tracks:
        with tempfile.TemporaryDirectory() as tmp:
            found = catalogue_rows(n, d, p, rng, Path(tmp) / "index", args.structure, len(q), starts,
                                   args.repeats, args.ef_search)
        for c in found:
            for label, decode_cqt in [(f"this machine, {n:,} tracks", pre)] + \
                    [("the same, query as 16 kHz mono WAV", pre_wav)] * (n == args.tracks[-1]):
                rows.append([label, c["catalogue"], c["index"], c["memory MB"], c["disk MB"], c["recall@10"],
                             round(decode_cqt, 1), round(infer, 1), round(c["retrieval"] + fuse, 1),
                             c["re-ranking"], round(decode_cqt + infer + c["retrieval"] + fuse, 1)])
                print(rows[-1], flush=True)
    print(f"\nTable III: the paper's row and this machine's ({p.features.cqt} CQT, paper-size encoder with "
          f"frame_pool {p.model.frame_pool} on {p.evaluate.runtime}, index.kind {p.index.kind}; minimum of "
          f"{args.repeats}), ms per "
          f"{QUERY_S:.0f} s query:\n")
    print(table(["", "catalogue", "index", "memory MB", "disk MB", "recall@10", "decode + CQT", "inference",
                 "retrieval", "of which re-ranking", "total"], rows))


if __name__ == "__main__":
    main()
