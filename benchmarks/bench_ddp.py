"""Data-parallel training speed: one process against N processes (gloo, torchrun's layout)
on the same global batches, params.yaml's model and batch (P × K), CQT tricks on.

Features are random log-CQT-like arrays (the step time does not depend on the values);
each configuration trains --steps steps after --warmup steps, in fresh processes, and the
rows are measured in this one run so the ratios compare like with like. On one machine
the processes share its cores: N processes get cores // N torch threads each.

    python benchmarks/bench_ddp.py [--nproc 1 2] [--steps 30] [--warmup 5]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from common import ROOT, table

from coverhunter.model import CoverHunterNet  # noqa: E402
from coverhunter.params import load_params  # noqa: E402
from coverhunter.training.augment import FeatureAugment  # noqa: E402
from coverhunter.training.batches import BatchMaker  # noqa: E402
from coverhunter.training.data import ChunkDataset  # noqa: E402
from coverhunter.training.loop import seed_everything, train  # noqa: E402
from coverhunter.training.losses import CoverHunterLoss  # noqa: E402
from coverhunter.training.sampler import PKSampler  # noqa: E402

N_WORKS, N_VERSIONS = 40, 5


def run(rank: int, world: int, store: str, threads: int, steps: int, warmup: int, out: str) -> None:
    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    p = load_params(ROOT / "params.yaml")
    rng = np.random.default_rng(0)
    feats = [rng.uniform(-80, 0, (int(rng.integers(1500, 3000)), p.features.n_bins)).astype(np.float32)
             for _ in range(N_WORKS * N_VERSIONS)]
    works = np.repeat(np.arange(N_WORKS), N_VERSIONS)
    seed_everything(p.train.seed)
    model = CoverHunterNet(p.features.n_bins, p.model, n_classes=N_WORKS)
    ds = ChunkDataset(feats, works, p.train.chunk_s, p.train.hop_s, p.features.frame_rate)
    loss = CoverHunterLoss(p.loss, np.bincount(ds.label), p.model.embedding_dim)
    sampler = PKSampler(ds.label, ds.recording, p.train.works_per_batch, p.train.versions_per_work, p.train.seed)
    make = BatchMaker(ds, p.train.seed, features=FeatureAugment(p.augment, p.train.pitch_roll_bins))
    with tempfile.TemporaryDirectory() as tmp:
        schedule = dataclasses.replace(p.train, max_steps=warmup + steps, checkpoint_every=10 ** 9,
                                       device="cpu")
        history = train(model, loss, ds, sampler, schedule, tmp, progress=False, make=make).history
    if rank == 0:
        took = history[-1]["elapsed_s"] - history[warmup - 1]["elapsed_s"]
        Path(out).write_text(str(took))
    if world > 1:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    p = load_params(ROOT / "params.yaml")
    batch = p.train.works_per_batch * p.train.versions_per_work
    cores = os.cpu_count() or 1
    rows, base = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.nproc:
            out = Path(tmp) / f"took-{n}"
            threads = max(1, cores // n)
            mp.spawn(run, args=(n, str(Path(tmp) / f"store-{n}"), threads, args.steps, args.warmup, str(out)),
                     nprocs=n, join=True)
            per_step = float(out.read_text()) / args.steps
            base = base or per_step
            rows.append([n, threads, batch, f"{per_step * 1000:.0f}", f"{batch / per_step:.1f}",
                         f"{base / per_step:.2f}"])
    print(f"{cores} cores; model d_model {p.model.d_model}, {p.model.n_blocks} blocks; "
          f"global batch {batch} chunks of {p.train.chunk_s:.0f} s; {args.steps} steps after {args.warmup}")
    print(table(["processes", "threads each", "global batch", "ms / step", "chunks / s", "speed-up"], rows))


if __name__ == "__main__":
    main()
