"""Checkpoints and devices: saving and loading a network's weights with its config, and
starting a model from another's weights. Every load is ``torch.load(weights_only=True)``
(a checkpoint can never run code).

Integrity: every checkpoint carries the SHA-256 of its tensors (:data:`DIGEST`), checked
on load, so a flipped byte is caught even where it leaves a finite weight; weights that
are not finite are refused; any load error names the file and the fix. Checkpoints
written before the digest existed load after the finiteness check alone.
"""
from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path

import torch

from coverhunter.atomic import write_atomic
from coverhunter.model.network import LEGACY_MODEL_KEYS, CoverHunterNet


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device {name!r} ({err}): use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: this machine has no CUDA device; use auto or cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA "
                         "device(s); use auto, cuda or cuda:N with a smaller N")
    return device


DIGEST = "tensors_sha256"   # the payload key holding the digest of every tensor in it


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted; the message names the file and the fix."""


def tensors_digest(payload) -> str:
    """SHA-256 over every tensor of a (nested) payload: its place, dtype, shape and bytes."""
    h = hashlib.sha256()

    def walk(node, where: str) -> None:
        if isinstance(node, torch.Tensor):
            t = node.detach().cpu().contiguous().reshape(-1)
            h.update(f"{where}|{node.dtype}|{tuple(node.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        elif isinstance(node, dict):
            for k, v in node.items():
                if k != DIGEST:
                    walk(v, f"{where}/{k}")
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")
    walk(payload, "")
    return h.hexdigest()


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write ``payload`` (a training checkpoint, or a model's config and weights) with its
    digest, atomically: a kill mid-write leaves the old file."""
    write_atomic(path, lambda tmp: torch.save({**payload, DIGEST: tensors_digest(payload)}, tmp))


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint, refusing a damaged one with a message naming the file."""
    path = Path(path)
    fix = "delete it and run the stage that writes it again (or restore it from git or DVC)"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; run the stage that writes it "
                              "(or restore it from git or DVC)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, ValueError, OSError, pickle.UnpicklingError, zipfile.BadZipFile,
            KeyError, IndexError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: cannot read the checkpoint ({detail}); {fix}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a CoverHunter checkpoint (no weights in it); {fix}")
    if DIGEST in state and tensors_digest(state) != state[DIGEST]:
        raise CheckpointError(f"{path}: the weights do not match the checksum saved with them "
                              f"(the file was damaged after it was written); {fix}")
    bad = [k for k, v in state["model"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: weights that are not finite (NaN or inf) in {', '.join(bad[:3])}"
                              f"{' …' if len(bad) > 3 else ''}: training diverged or the file is "
                              f"damaged; {fix}")
    return state


def save_model(state: dict, path: str | Path, **extra) -> Path:
    """Write the inference part of a checkpoint ``state`` (config + weights) and ``extra``
    metadata to ``path`` atomically, with its digest; :func:`load_model` reads it back."""
    path = Path(path)
    save_checkpoint(path, {"config": state["config"], "model": state["model"], **extra})
    return path


def load_model(path: str | Path) -> CoverHunterNet:
    """A trained network from a checkpoint, in eval mode."""
    state = load_checkpoint(Path(path))
    model = CoverHunterNet.from_config(state["config"])
    model.load_state_dict(state["model"])
    return model.eval()


# model keys that change no weight shape or meaning: a checkpoint may differ in them
SHAPE_FREE = ("dropout", "pool_mask_prob", "gem_p")   # gem_p: only the learnt p's start


def _same_model(ours: dict, ckpt: dict, path: Path) -> None:
    """Refuse a checkpoint whose ``model:`` parameters differ from ``ours`` (but dropout rates)."""
    theirs = {**LEGACY_MODEL_KEYS, **ckpt["config"]["model"]}
    differ = sorted(k for k, v in ours.items() if k not in SHAPE_FREE and theirs.get(k) != v)
    if differ:
        raise ValueError(f"{path} was trained with other model params: "
                         + ", ".join(f"model.{k}={theirs.get(k)!r} (params.yaml: {ours[k]!r})"
                                     for k in differ)
                         + "; set them as the checkpoint has them, or start from scratch")


def start_from(model: CoverHunterNet, path: Path) -> None:
    """Copy a trained model's weights into ``model``, all but its classifier (the fine
    model's classes are the works that have aligned pairs; a pretrained model's, the large
    catalogue's works). The two must share every ``model:`` parameter but dropout rates."""
    ckpt = load_checkpoint(path)
    _same_model(model.config["model"], ckpt, path)
    state = {k: v for k, v in ckpt["model"].items() if not k.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("classifier.") for k in missing):
        raise ValueError(f"{path} does not match the model in params.yaml "
                         f"(missing {missing}, unexpected {unexpected})")


def interpolate_from(state: dict, path: Path, share: float) -> dict:
    """A checkpoint ``state`` whose weights are moved ``share`` of the way to those of the
    checkpoint at ``path``: ``(1 - share)·ours + share·theirs`` for every floating-point
    tensor but the classifier; integer buffers and the classifier stay ours. Weight-space
    ensembling of a fine-tuned model with the model it started from ("WiSE-FT", Wortsman
    et al., CVPR 2022; not in the CoverHunter paper): it keeps more of the starting model's
    generality. The two must share every ``model:`` parameter but dropout rates."""
    ckpt = load_checkpoint(path)
    _same_model(state["config"]["model"], ckpt, path)
    theirs = ckpt["model"]
    ours = {k: v for k, v in state["model"].items() if not k.startswith("classifier.")}
    if set(ours) != {k for k in theirs if not k.startswith("classifier.")}:
        raise ValueError(f"{path} does not hold the same weights as the model it is blended with "
                         f"(only in one of them: {sorted(set(ours) ^ set(theirs))[:3]})")
    blended = {k: torch.lerp(v, theirs[k].to(v.dtype), share) if v.is_floating_point() else v
               for k, v in ours.items()}
    return {**state, "model": {**state["model"], **blended}}
