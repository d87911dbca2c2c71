"""Cost of on-the-fly audio augmentation [III-B] per training chunk, against its CQT.

Each audio transform of coverhunter.training.augment_audio (and all of them in a row, every
probability 1) is timed on a 15 s and a 45 s clip, next to the CQT extraction of that clip
(the work on-the-fly augmentation forces into every training step), with a training step
of a batch of 32 chunks taking ~0.3–2.5 s for scale. Audio: a real score from the music21
corpus rendered offline; noise-folder noise: a 30 s 16 kHz WAV written to a temporary
folder (decoded on every draw). Median of --repeats runs, 2 torch threads. Usage:
    python benchmarks/bench_augment.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from common import ROOT, best_of, table

from coverhunter.demo.render import load_corpus_score, render_score  # noqa: E402
from coverhunter.features.cqt import CQTFrontEnd, extract_cqt  # noqa: E402
from coverhunter.features.effects import gain_db, mix_at_snr  # noqa: E402
from coverhunter.params import load_params  # noqa: E402
from coverhunter.training.augment_audio import AudioAugment, NoiseSource, change_speed  # noqa: E402

CLIPS_S = (15.0, 45.0)
BATCH = 32


def transforms(p, sr: int, noise_dir: Path, other: np.ndarray) -> dict:
    """label -> fn(clip, rng); the noise rows include drawing the noise."""
    a = p.augment
    coloured = NoiseSource(sr, a.noise_exponent, 1.0, 0.0, 0.0)
    folder = NoiseSource(sr, a.noise_exponent, 0.0, 1.0, 0.0, noise_dir=noise_dir)
    work = NoiseSource(sr, a.noise_exponent, 0.0, 0.0, 1.0, other_works=[other])
    every = AudioAugment(dataclasses.replace(a, speed_prob=1.0, noise_prob=1.0, volume_prob=1.0),
                         NoiseSource(sr, a.noise_exponent, 1.0, 0.0, 0.0))
    return {
        "speed ×0.8 (librosa time_stretch)": lambda x, rng: change_speed(x, 0.8),
        "speed ×1.2 (librosa time_stretch)": lambda x, rng: change_speed(x, 1.2),
        "noise: coloured, drawn + mixed": lambda x, rng: mix_at_snr(x, coloured.draw(rng, len(x)), 5.0),
        "noise: folder file, decoded + mixed": lambda x, rng: mix_at_snr(x, folder.draw(rng, len(x)), 5.0),
        "noise: other work, window + mixed": lambda x, rng: mix_at_snr(x, work.draw(rng, len(x)), 5.0),
        "volume (gain_db)": lambda x, rng: gain_db(x, -3.0),
        "all three (AudioAugment, p = 1)": lambda x, rng: every(x, rng),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    p = load_params(ROOT / "params.yaml")
    sr = p.features.sample_rate
    tune = render_score(load_corpus_score("ryansMammoth/GreenSleevesJig"), sr)
    clips = {s: np.tile(tune, int(s * sr) // len(tune) + 1)[: int(s * sr)] for s in (*CLIPS_S, 60.0)}
    rng = np.random.default_rng(0)
    front = CQTFrontEnd(p.features)

    with tempfile.TemporaryDirectory() as tmp:
        sf.write(Path(tmp) / "noise.wav", rng.standard_normal(30 * sr).astype(np.float32) * 0.1, sr)
        fns = transforms(p, sr, Path(tmp), clips[60.0])
        cqt = {s: best_of(lambda: extract_cqt([clips[s]], front), args.repeats) for s in CLIPS_S}
        batched = {s: best_of(lambda: extract_cqt([clips[s]] * BATCH, front), 1) / BATCH
                   for s in CLIPS_S}  # the training loop would batch its chunks
        rows = [["CQT extraction (reference)", *(1e3 * cqt[s] for s in CLIPS_S), 1.0, 1.0],
                [f"CQT extraction, batch of {BATCH}, per clip",
                 *(1e3 * batched[s] for s in CLIPS_S), *(batched[s] / cqt[s] for s in CLIPS_S)]]
        for label, fn in fns.items():
            t = {s: best_of(lambda: fn(clips[s], rng), args.repeats) for s in CLIPS_S}
            rows.append([label, *(1e3 * t[s] for s in CLIPS_S), *(t[s] / cqt[s] for s in CLIPS_S)])
    print(f"torch threads {torch.get_num_threads()}, median of {args.repeats}")
    print(table(["per clip", "15 s (ms)", "45 s (ms)", "× CQT 15 s", "× CQT 45 s"], rows))
    every_15 = rows[-1][1] / 1e3
    print(f"\nbatch of {BATCH} × 15 s chunks, serial on this process: all audio steps "
          f"{BATCH * every_15:.2f} s + CQT {BATCH * cqt[15.0]:.2f} s one by one, "
          f"{BATCH * batched[15.0]:.2f} s batched "
          f"(a training step: ~0.3–2.5 s per batch of {BATCH})")


if __name__ == "__main__":
    main()
