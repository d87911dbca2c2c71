"""DVC stage `extract`: log-CQT features of every validated recording (incremental); and the
same work as shards for a task runner (flows/extract.py)."""
from __future__ import annotations

from pathlib import Path

from coverhunter.features.extract import Todo, extract_catalogue, plan, shards
from coverhunter.model.checkpoint import resolve_device
from coverhunter.pipeline.layout import FEATURES, PARAMS, load, validated_manifest


def run(params_path: str | Path = PARAMS, out_dir: Path = FEATURES, progress: bool = True) -> dict:
    p, _ = load(params_path)
    df = validated_manifest()
    index = extract_catalogue(df["recording_id"].tolist(), df["audio_file"].tolist(), out_dir,
                              p.features, resolve_device(p.train.device), progress)
    return {"recordings": len(index), "frames": int(index["n_frames"].sum())}


def sharded(params_path: str | Path = PARAMS, out_dir: Path = FEATURES,
            n_shards: int | None = None) -> tuple[dict[str, dict], list[list[Todo]]]:
    """The index rows kept (current and intact) and the rest of the catalogue in at most
    ``n_shards`` (default ``flow.shards``) shards of whole CQT batches."""
    p, _ = load(params_path)
    df = validated_manifest()
    kept, todo = plan(df["recording_id"].tolist(), df["audio_file"].tolist(), out_dir, p.features)
    return kept, shards(todo, p.features, n_shards or p.flow.shards)
