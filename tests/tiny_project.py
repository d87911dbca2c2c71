"""A temporary copy of the repository with tiny parameters, for end-to-end tests that
run the real DVC stages (test_pipeline, test_faults)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import ROOT

BIN = Path(sys.executable).parent
COPY = ["coverhunter", "stages", "flows", "models", "dvc.yaml", ".dvcignore", ".dvc/config",
        ".gitignore", "pyproject.toml"]

TINY = {
    "model": {"d_model": 32, "ff_dim": 64, "n_heads": 2, "n_blocks": 2, "conv_kernel": 7,
              "subsample_channels": 8, "pool_dim": 32, "pool_hidden": 16, "embedding_dim": 16},
    "train": {"max_steps": 30, "checkpoint_every": 10, "works_per_batch": 4, "versions_per_work": 2,
              "log_every": 5, "device": "cpu", "init": "scratch"},   # the shipped checkpoint is not tiny
    "evaluate": {"chunk_s": 15.0, "hop_s": 15.0, "batch_chunks": 8},
    "align": {"batch_chunks": 8},
    "fine": {"max_steps": 20, "min_s": 15.0, "max_s": 25.0},
    "index": {"chunk_s": 15.0, "hop_s": 5.0},
}
ALL_STAGES = {"demo", "validate", "extract", "train_coarse", "align", "train_fine", "evaluate", "index"}
REFERENCES = {"untrained", "baseline_2dftm", "baseline_chroma", "fused", "reranked",   # rows never registered
              "baseline_2dftm_tuned", "baseline_chroma_tuned", "baseline_2dftm_centred",
              "baseline_2dftm_tuned_centred"}


def tiny_params(extra: dict | None = None) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in (*TINY.items(), *(extra or {}).items()):
        raw[section].update(values)
    raw["demo"]["size"] = "tiny"
    return raw


def make_copy(dest: Path, extra: dict | None = None) -> Path:
    """The repository's code and tiny params (``extra``: more ``{section: {key: value}}``)
    in ``dest``, committed to a git repository of its own."""
    for name in COPY:
        src = ROOT / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, target)
    (dest / "params.yaml").write_text(yaml.safe_dump(tiny_params(extra), sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "tiny"], cwd=dest, check=True)
    return dest


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e['PATH']}"
    for leaked in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "COVERHUNTER_PIPELINE_RUN"):
        e.pop(leaked, None)   # mlflow.set_*_uri exports these into the test process
    return e


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([str(BIN / "dvc"), *args], cwd=repo, env=env(), text=True,
                         capture_output=True, timeout=900)
    assert out.returncode == 0, f"dvc {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def set_param(repo: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params[section][key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
