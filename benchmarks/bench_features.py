"""CQT throughput: nnAudio (the project's front end) against librosa on the same audio.

Audio: a real score from the music21 corpus rendered offline, tiled to the requested
length. Prints × real time for each and their ratio (measured in this process, so the
ratio is meaningful on a noisy shared machine). Usage:
    python benchmarks/bench_features.py [--seconds 120] [--repeats 3]
"""
from __future__ import annotations

import argparse
import dataclasses

import librosa  # noqa: E402
import numpy as np
import torch
from common import ROOT, best_of, table

from coverhunter.demo.render import load_corpus_score, render_score  # noqa: E402
from coverhunter.features.cqt import CQTFrontEnd, extract_cqt  # noqa: E402
from coverhunter.params import load_params  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    p = load_params(ROOT / "params.yaml").features
    tune = render_score(load_corpus_score("ryansMammoth/GreenSleevesJig"), p.sample_rate)
    n = int(args.seconds * p.sample_rate)
    audio = np.tile(tune, n // len(tune) + 1)[:n]
    print(f"audio: {args.seconds:.0f} s at {p.sample_rate} Hz, torch threads {torch.get_num_threads()}")

    rows = []
    librosa_s = best_of(lambda: librosa.cqt(
        audio, sr=p.sample_rate, hop_length=p.hop_length, fmin=p.fmin, n_bins=95,
        bins_per_octave=p.bins_per_octave), args.repeats)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    names = {"nnaudio": "nnAudio CQT1992v2", "multirate": "multirate CQT"}
    for device in devices:
        for kind, name in names.items():      # interleaved on the same audio
            front = CQTFrontEnd(dataclasses.replace(p, cqt=kind))
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            one = best_of(lambda: (extract_cqt([audio], front, device), sync()), args.repeats)
            batch = [audio[: n // 4]] * 4 * 4          # 16 quarter-length recordings, batched
            many = best_of(lambda: (extract_cqt(batch, front, device), sync()), args.repeats)
            rows.append([f"{name} ({device}, 1 recording)", args.seconds / one, librosa_s / one])
            rows.append([f"{name} ({device}, 16 recordings)", 4 * args.seconds / many,
                         librosa_s / (many / 4)])
    rows.append(["librosa.cqt (cpu, 95 bins)", args.seconds / librosa_s, 1.0])
    print(table(["transform", "× real time", "speed vs librosa"], rows))


if __name__ == "__main__":
    main()
