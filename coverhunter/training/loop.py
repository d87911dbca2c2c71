"""Training loop [III-A]: Adam, lr decayed ×``lr_decay`` every ``lr_decay_steps`` steps,
P×K batches, the joint loss of II-C.

The loop is step-based and resumable: every ``checkpoint_every`` steps it writes one
checkpoint (model, loss centres, optimiser, scheduler, AMP scaler, sampler and RNG state,
metric history) atomically, and a later call with the same output folder continues exactly
where the last checkpoint left off: on CPU the resumed run is bit-identical to an
uninterrupted one. A per-step callback receives the step's metrics (for tracking).
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

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
        _set_rng_state(state["rng"])
        step, history = state["step"], state["history"]

    stream = BatchStream(sampler, make or BatchMaker(dataset, p.seed), step, p.prefetch_batches)

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "loss": loss_fn.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "sampler": stream.sampler_state(),
            "rng": _rng_state(), "step": step, "history": history,
            "config": model.config})

    bar = progress_bar(p.max_steps, "train", "step", progress, initial=step)
    # wall time across resumed segments: the last checkpointed step's elapsed_s plus this segment's
    elapsed0, t0 = (history[-1].get("elapsed_s", 0.0) if history else 0.0), time.perf_counter()
    try:
        while step < p.max_steps:
            batch = stream.next()
            x, lengths, labels = (t.to(device) for t in batch[:3])  # (B, T, bins), (B,), (B,)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                out = model(x, lengths)
            terms = loss_fn(out.pre.float(), out.embedding.float(), out.logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(terms.total).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            metrics = {name: float(value.detach()) for name, value in terms._asdict().items()}
            metrics["lr"] = scheduler.get_last_lr()[0]
            metrics["audio_augmented"] = batch.audio_items / len(labels)   # share of the batch
            metrics["elapsed_s"] = elapsed0 + time.perf_counter() - t0
            history.append(metrics)
            if callback is not None:
                callback(step, metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['total']:.3f}")
            if step % p.checkpoint_every == 0 or step == p.max_steps:
                checkpoint()
    finally:
        stream.close()
        bar.close()
    return TrainResult(step, history, ckpt_path if ckpt_path.exists() else None)
