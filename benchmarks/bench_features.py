"""CQT throughput: nnAudio (the reference front end) and the multirate one against librosa
on the same audio, then decode + CQT from files as `extract` and `identify` run them.

Audio: a real score from the music21 corpus rendered offline, tiled to the requested
length. Prints × real time for each and their ratio (measured in this process, so the
ratio is meaningful on a noisy shared machine). The decode rows read the same audio from
FLAC files: 16 kHz mono (the demo catalogue's) and 44.1 kHz stereo (a CD rip). Usage:
    python benchmarks/bench_features.py [--seconds 120] [--repeats 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import librosa  # noqa: E402
import numpy as np
import soundfile as sf
import soxr
import torch
from common import ROOT, best_of, table

from coverhunter.demo.render import load_corpus_score, render_score  # noqa: E402
from coverhunter.features.audio import load_audio  # noqa: E402
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
    with tempfile.TemporaryDirectory() as tmp:
        files = {"FLAC 16 kHz mono": (Path(tmp) / "mono.flac", audio[:, None], p.sample_rate)}
        cd = soxr.resample(audio, p.sample_rate, 44100)
        files["FLAC 44.1 kHz stereo"] = (Path(tmp) / "cd.flac", np.stack([cd, 0.8 * cd], 1), 44100)
        for label, (path, samples, rate) in files.items():
            sf.write(path, samples, rate, subtype="PCM_16")
            for kind, name in names.items():
                front = CQTFrontEnd(dataclasses.replace(p, cqt=kind))
                t = best_of(lambda: extract_cqt([load_audio(path, p.sample_rate)], front), args.repeats)
                rows.append([f"decode {label} + {name} (cpu)", args.seconds / t, librosa_s / t])
    print(table(["transform", "× real time", "speed vs librosa"], rows))


if __name__ == "__main__":
    main()
