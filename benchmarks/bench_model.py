"""Model cost on this machine: parameters, forward time of one 45 s chunk (inference,
Table III of the paper), training throughput (forward + backward + Adam, chunks/s) and
peak memory, for the paper-default model and a few alternatives (among them the
ResNet-IBN 50 baseline backbone of Table II at a few widths).

Times are measured in one process, interleaving the configurations round by round, so that
the ratios to the default are fair on a noisy shared machine; the peak memory of each
configuration is measured in its own subprocess. Usage:
    python benchmarks/bench_model.py [--rounds 5] [--train-batch 16] [--device cpu]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time

import torch
from common import ROOT, peak_rss_mib, table

from coverhunter.model import CoverHunterNet  # noqa: E402
from coverhunter.params import load_params  # noqa: E402
from coverhunter.training.losses import CoverHunterLoss  # noqa: E402

# (label, overrides of params.yaml's model section)
PAPER = {"d_model": 128, "ff_dim": 256, "n_blocks": 6, "subsample_channels": 128}
CONFIGS = [
    ("default (params.yaml)", {}),
    ("paper size, frame_pool 3", PAPER),
    ("paper size, frame_pool 1 (25 frames/s)", {**PAPER, "frame_pool": 1}),
    ("width 256, ff 256", {"d_model": 256, "ff_dim": 256}),
    ("width 256, ff 1024", {"d_model": 256, "ff_dim": 1024}),
    ("pooling gem", {"pooling": "gem"}),
    ("pooling mean", {"pooling": "mean"}),
    ("resnet_ibn width 8", {"backbone": "resnet_ibn", "resnet_width": 8}),
    ("resnet_ibn width 16", {"backbone": "resnet_ibn", "resnet_width": 16}),
    ("resnet_ibn width 64 (paper)", {"backbone": "resnet_ibn", "resnet_width": 64}),
]
N_CLASSES = 1000


class Bench:
    """One configuration: its network, optimiser and inputs, ready to time."""

    def __init__(self, overrides: dict, train_batch: int, device: str):
        params = load_params(ROOT / "params.yaml")
        mp = dataclasses.replace(params.model, **overrides)
        fps, bins = params.features.frame_rate, params.features.n_bins
        torch.manual_seed(0)
        self.device = device
        self.net = CoverHunterNet(bins, mp, N_CLASSES).to(device)
        self.n_params = sum(p.numel() for p in self.net.parameters()) - mp.embedding_dim * N_CLASSES
        self.loss = CoverHunterLoss(params.loss, [1] * N_CLASSES, mp.embedding_dim).to(device)
        self.opt = torch.optim.Adam(list(self.net.parameters()) + list(self.loss.parameters()))
        self.chunk45 = torch.randn(1, round(params.evaluate.chunk_s * fps), bins, device=device)
        self.batch = torch.randn(train_batch, round(params.train.chunk_s * fps), bins, device=device)
        self.labels = torch.arange(train_batch, device=device) // 4

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def forward(self) -> float:
        self.net.eval()
        t0 = time.perf_counter()
        self.net.embed(self.chunk45)
        self.sync()
        return time.perf_counter() - t0

    def train_step(self) -> float:
        self.net.train()
        t0 = time.perf_counter()
        out = self.net(self.batch)
        total = self.loss(out.pre, out.embedding, out.logits, self.labels).total
        self.opt.zero_grad()
        total.backward()
        self.opt.step()
        self.sync()
        return time.perf_counter() - t0


def peak_memory(overrides: dict, train_batch: int, device: str) -> float:
    """Peak memory (MiB) of one forward and one training step, in a fresh process."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench_model as b, json;"
            f"x = b.Bench(json.loads({json.dumps(overrides)!r}), {train_batch}, {device!r});"
            "x.forward(); x.train_step(); print(b.memory_now(x.device))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def memory_now(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_rss_mib()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(f"device {args.device}, torch threads {torch.get_num_threads()}; forward: one 45 s chunk "
          f"(1125 frames); training: batch of {args.train_batch} × 15 s chunks; {args.rounds} rounds")
    benches = [Bench(o, args.train_batch, args.device) for _, o in CONFIGS]
    for b in benches:                              # warm-up
        b.forward(), b.train_step()
    fwd = [[] for _ in benches]
    trn = [[] for _ in benches]
    for _ in range(args.rounds):                   # interleaved: noise hits all configs alike
        for i, b in enumerate(benches):
            fwd[i].append(min(b.forward() for _ in range(3)))
            trn[i].append(b.train_step())
    f_ms = [statistics.median(t) * 1000 for t in fwd]
    t_cs = [args.train_batch / statistics.median(t) for t in trn]
    rows = []
    for i, ((label, overrides), b) in enumerate(zip(CONFIGS, benches)):
        mem = peak_memory(overrides, args.train_batch, args.device)
        rows.append([label, f"{b.n_params / 1e6:.2f} M", f_ms[i], f_ms[i] / f_ms[0],
                     t_cs[i], t_cs[i] / t_cs[0], mem])
    print(table(["model", "parameters", "forward ms / 45 s chunk", "× default",
                 "train chunks/s", "× default", "peak MiB"], rows))
    print("parameters exclude the training-only classifier (embedding_dim × n_classes); "
          "peak MiB is the process's resident peak (CPU) or torch's allocated peak (CUDA).")


if __name__ == "__main__":
    main()
