"""DVC stage `extract`: log-CQT features of every validated recording (incremental)."""
from __future__ import annotations

from pathlib import Path

from coverhunter.features.extract import extract_catalogue
from coverhunter.model.checkpoint import resolve_device
from coverhunter.pipeline.layout import FEATURES, PARAMS, load, validated_manifest


def run(params_path: str | Path = PARAMS, out_dir: Path = FEATURES, progress: bool = True) -> dict:
    p, _ = load(params_path)
    df = validated_manifest()
    index = extract_catalogue(df["recording_id"].tolist(), df["audio_file"].tolist(), out_dir,
                              p.features, resolve_device(p.train.device), progress)
    return {"recordings": len(index), "frames": int(index["n_frames"].sum())}
