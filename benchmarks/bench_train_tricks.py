"""Training throughput with the tricks of III-B on and off (coarse model, params.yaml sizes).

Trains the params.yaml model for --steps steps (after --warmup) on real music: corpus tunes
rendered offline under different programs, transpositions and tempi, written as FLAC to a
temporary folder, their features extracted as the extract stage does. Rows, all in this one
process so that the ratios compare like with like on a shared machine:

- tricks off: stored chunks only (`train.tricks: false`);
- CQT tricks: pitch roll + SpecAugment masks (audio probabilities 0, as the CPU demo);
- audio steps at 0.5 each: the chunks that draw speed, noise or volume are cut from the
  audio, augmented and re-transformed (the setting for a GPU);
- every audio step on every chunk (the worst case).

Chunks/s counts training chunks (batch size × steps / wall time), `prefetch` is
`train.prefetch_batches`. Usage: python benchmarks/bench_train_tricks.py [--steps 20]
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from common import ROOT, table

from coverhunter.demo.render import load_corpus_score, render_score  # noqa: E402
from coverhunter.features.cqt import CQTFrontEnd, extract_cqt  # noqa: E402
from coverhunter.model import CoverHunterNet  # noqa: E402
from coverhunter.params import load_params  # noqa: E402
from coverhunter.pipeline.train import _coarse_data, batch_maker  # noqa: E402
from coverhunter.training.loop import seed_everything, train  # noqa: E402
from coverhunter.training.losses import CoverHunterLoss  # noqa: E402

TUNES = ["ryansMammoth/GreenSleevesJig", "ryansMammoth/AcaciaReel",
         "ryansMammoth/AdmiralsHornpipe", "ryansMammoth/AlhambraReel"]
VERSIONS = [(0, 0, 1.0), (40, 3, 0.85), (24, -4, 1.2), (73, 2, 1.05)]   # program, semitones, tempo
SECONDS = 60.0


def catalogue(folder: Path, sr: int) -> pd.DataFrame:
    """Each tune in four versions, looped to SECONDS, as FLAC files."""
    rows = []
    for w, name in enumerate(TUNES):
        score = load_corpus_score(name)
        for v, (program, semitones, tempo) in enumerate(VERSIONS):
            audio = render_score(score, sr, program=program, transpose=semitones, tempo_scale=tempo)
            audio = np.tile(audio, int(SECONDS * sr) // len(audio) + 1)[: int(SECONDS * sr)]
            path = folder / f"w{w}-v{v}.flac"
            sf.write(path, audio, sr)
            rows.append({"recording_id": path.stem, "work_id": f"w{w}", "audio_file": str(path),
                         "measured_duration_s": SECONDS})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    p = load_params(ROOT / "params.yaml")
    p = dataclasses.replace(p, train=dataclasses.replace(p.train, device="cpu", checkpoint_every=10**6))
    sr = p.features.sample_rate
    a = p.augment
    variants = {
        "tricks off": dataclasses.replace(p, train=dataclasses.replace(p.train, tricks=False)),
        "CQT tricks (roll, masks: the CPU demo)": dataclasses.replace(p, augment=dataclasses.replace(
            a, speed_prob=0.0, noise_prob=0.0, volume_prob=0.0)),
        "+ audio steps at 0.5 each (GPU setting)": dataclasses.replace(p, augment=dataclasses.replace(
            a, speed_prob=0.5, noise_prob=0.5, volume_prob=0.5)),
        "+ every audio step on every chunk": dataclasses.replace(p, augment=dataclasses.replace(
            a, speed_prob=1.0, noise_prob=1.0, volume_prob=1.0)),
    }
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        df = catalogue(Path(tmp), sr)
        feats = extract_cqt([sf.read(f, dtype="float32")[0] for f in df["audio_file"]],
                            CQTFrontEnd(p.features))
        works = sorted(df["work_id"].unique())
        labels = df["work_id"].map({w: i for i, w in enumerate(works)}).tolist()
        for label, q in variants.items():
            ds, sampler, counts = _coarse_data(q, df, works, feats)
            make = batch_maker(q, ds, list(range(len(df))), df, labels, q.train.chunk_s)
            seed_everything(q.train.seed)
            model = CoverHunterNet(q.features.n_bins, q.model, len(works))
            loss = CoverHunterLoss(q.loss, counts, q.model.embedding_dim)
            history = []
            t0 = time.perf_counter()
            done = {}

            def clock(step, metrics, t0=t0):
                history.append(metrics["audio_augmented"])
                if step == args.warmup:
                    done["t"] = time.perf_counter()

            total = args.warmup + args.steps
            train(model, loss, ds, sampler, dataclasses.replace(q.train, max_steps=total),
                  Path(tmp) / label.replace(" ", "_")[:20], callback=clock, progress=False, make=make)
            seconds = time.perf_counter() - done.get("t", t0)
            batch = sampler.p * sampler.k
            rate = args.steps * batch / seconds
            reference = reference or rate
            rows.append([label, seconds / args.steps, rate, rate / reference,
                         float(np.mean(history[args.warmup:]))])
    print(f"torch threads {torch.get_num_threads()}, batch {len(TUNES)}×"
          f"{p.train.versions_per_work} chunks of {p.train.chunk_s:g} s, {args.steps} steps after "
          f"{args.warmup} warm-up, prefetch {p.train.prefetch_batches}, model {p.model.backbone} "
          f"d={p.model.d_model}")
    print(table(["training", "s / step", "chunks / s", "× tricks off", "share re-transformed"], rows))


if __name__ == "__main__":
    main()
