"""Checkpoints and devices: saving and loading a network's weights with its config, and
starting a model from another's weights. Every load is ``torch.load(weights_only=True)``
(a checkpoint can never run code)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from coverhunter.model.network import LEGACY_MODEL_KEYS, CoverHunterNet


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write atomically: a kill during the write leaves the previous checkpoint intact."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def save_model(state: dict, path: str | Path, **extra) -> Path:
    """Write the inference part of a checkpoint ``state`` (config + weights) and ``extra``
    metadata to ``path``; :func:`load_model` reads it back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": state["config"], "model": state["model"], **extra}, path)
    return path


def load_model(path: str | Path) -> CoverHunterNet:
    """A trained network from a checkpoint, in eval mode."""
    state = load_checkpoint(Path(path))
    model = CoverHunterNet.from_config(state["config"])
    model.load_state_dict(state["model"])
    return model.eval()


# model keys that change no weight shape or meaning: a checkpoint may differ in them
SHAPE_FREE = ("dropout", "pool_mask_prob", "gem_p")   # gem_p: only the learnt p's start


def start_from(model: CoverHunterNet, path: Path) -> None:
    """Copy a trained model's weights into ``model``, all but its classifier (the fine
    model's classes are the works that have aligned pairs; a pretrained model's, the large
    catalogue's works). The two must share every ``model:`` parameter but dropout rates."""
    ckpt = load_checkpoint(path)
    theirs = {**LEGACY_MODEL_KEYS, **ckpt["config"]["model"]}
    differ = sorted(k for k, v in model.config["model"].items()
                    if k not in SHAPE_FREE and theirs.get(k) != v)
    if differ:
        raise ValueError(f"{path} was trained with other model params: "
                         + ", ".join(f"model.{k}={theirs.get(k)!r} (params.yaml: {model.config['model'][k]!r})"
                                     for k in differ)
                         + "; set them as the checkpoint has them, or start from scratch")
    state = {k: v for k, v in ckpt["model"].items() if not k.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("classifier.") for k in missing):
        raise ValueError(f"{path} does not match the model in params.yaml "
                         f"(missing {missing}, unexpected {unexpected})")
