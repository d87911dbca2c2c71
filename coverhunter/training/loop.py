"""Training loop [III-A]: Adam, lr decayed ×``lr_decay`` every ``lr_decay_steps`` steps,
P×K batches, the joint loss of II-C.

The loop is step-based and resumable: every ``checkpoint_every`` steps it writes one
checkpoint (model, loss centres, optimiser, scheduler, AMP scaler, sampler and RNG state,
metric history) atomically, and a later call with the same output folder continues exactly
where the last checkpoint left off: on CPU the resumed run is bit-identical to an
uninterrupted one. A per-step callback receives the step's metrics (for tracking).

Under ``torchrun`` (coverhunter.distributed) each process trains on its block of the same
global batch with ``DistributedDataParallel``; rank 0 writes the checkpoints (with every
process's random state), every process resumes from them, and the callback and progress
bar run on rank 0 with the metrics averaged over processes.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from coverhunter import distributed
from coverhunter.model import CoverHunterNet
from coverhunter.model.checkpoint import load_checkpoint, resolve_device, save_checkpoint
from coverhunter.params import TrainParams
from coverhunter.progress import bar as progress_bar
from coverhunter.training.batches import BatchMaker, BatchStream
from coverhunter.training.losses import CoverHunterLoss
from coverhunter.training.sampler import PKSampler

StepCallback = Callable[[int, dict[str, float]], None]
CHECKPOINT = "checkpoint.pt"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (model initialisation, dropout, attention masks)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainResult:
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Objective(nn.Module):
    """The network and the joint loss as one module (what data parallelism wraps: the loss
    holds parameters too, the class centres): ``(x, lengths, labels)`` → loss terms."""

    def __init__(self, model: CoverHunterNet, loss_fn: CoverHunterLoss, amp_device: str | None):
        super().__init__()
        self.model, self.loss_fn, self.amp_device = model, loss_fn, amp_device

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor):
        # x: (B, T, bins); lengths, labels: (B,)
        with torch.autocast(self.amp_device or "cpu", dtype=torch.float16, enabled=self.amp_device is not None):
            out = self.model(x, lengths)
        return self.loss_fn(out.pre.float(), out.embedding.float(), out.logits.float(), labels)


# long on purpose: the loop and its checkpoint and resume protocol read as one unit
def train(model: CoverHunterNet, loss_fn: CoverHunterLoss, dataset, sampler: PKSampler,
          p: TrainParams, out_dir: str | Path, callback: StepCallback | None = None,
          progress: bool = True, make: BatchMaker | None = None) -> TrainResult:
    """Train until ``p.max_steps``, resuming from ``out_dir/checkpoint.pt`` if present.

    ``sampler.sample()`` draws a batch's specs and ``make(specs, step)`` builds it
    (default: the dataset's stored chunks, no tricks; :mod:`coverhunter.training.batches`), built
    ``p.prefetch_batches`` ahead on a background thread.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(p.device)
    use_amp = p.amp and device.type == "cuda"
    model.to(device).train()
    loss_fn.to(device).train()
    objective: nn.Module = Objective(model, loss_fn, device.type if use_amp else None)
    if distributed.active():
        if model.config["model"]["backbone"] != "conformer":
            raise ValueError("data-parallel training supports model.backbone: conformer only "
                             "(resnet_ibn's BatchNorms are not synchronised across processes)")
        # the same weights everywhere (every process seeds alike; DDP broadcasts rank 0's anyway)
        objective = DistributedDataParallel(objective, forward_sync_buffers=False)
    params = list(model.parameters()) + list(loss_fn.parameters())
    optimizer = torch.optim.Adam(params, lr=p.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, p.lr_decay_steps, gamma=p.lr_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    ckpt_path = out_dir / CHECKPOINT
    step, history = 0, []
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        loss_fn.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        sampler.load_state_dict(state["sampler"])
        ranks = state.get("rng_ranks", [state["rng"]])
        _set_rng_state(ranks[distributed.rank()] if len(ranks) == distributed.world_size() else state["rng"])
        step, history = state["step"], state["history"]
    elif distributed.rank() > 0:                 # dropout and attention masks differ per process
        torch.manual_seed(p.seed + distributed.rank())
    distributed.barrier()                        # every process has read the checkpoint

    stream = BatchStream(sampler, make or BatchMaker(dataset, p.seed), step, p.prefetch_batches)

    def checkpoint() -> None:
        rng = distributed.gather_objects(_rng_state())
        if not distributed.is_main():
            return
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "loss": loss_fn.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "sampler": stream.sampler_state(),
            "rng": rng[0], "rng_ranks": rng, "step": step, "history": history,
            "config": model.config})

    main = distributed.is_main()
    bar = progress_bar(p.max_steps, "train", "step", progress and main, initial=step)
    # wall time across resumed segments: the last checkpointed step's elapsed_s plus this segment's
    elapsed0, t0 = (history[-1].get("elapsed_s", 0.0) if history else 0.0), time.perf_counter()
    try:
        while step < p.max_steps:
            batch = stream.next()
            rows = distributed.my_rows(len(batch.labels))   # this process's block
            x, lengths, labels = (t[rows].to(device) for t in batch[:3])  # (B, T, bins), (B,), (B,)
            terms = objective(x, lengths, labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(terms.total).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            metrics = distributed.mean_over_ranks(
                {name: float(value.detach()) for name, value in terms._asdict().items()})
            metrics["lr"] = scheduler.get_last_lr()[0]
            metrics["audio_augmented"] = batch.audio_items / len(batch.labels)   # share of the global batch
            metrics["elapsed_s"] = elapsed0 + time.perf_counter() - t0
            history.append(metrics)
            if callback is not None and main:
                callback(step, metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['total']:.3f}")
            if step % p.checkpoint_every == 0 or step == p.max_steps:
                checkpoint()
    finally:
        stream.close()
        bar.close()
    distributed.barrier()                        # rank 0's last checkpoint is on disk
    return TrainResult(step, history, ckpt_path if ckpt_path.exists() else None)
