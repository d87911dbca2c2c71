"""Shared fixtures: the repository's params.yaml and a tiny model configuration."""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import pytest
import torch

from coverhunter.params import Params, load_params

ROOT = Path(__file__).resolve().parents[1]

# quiet, offline runs (no telemetry or analytics); a Prefect home of this test session's own
for key, value in {"DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                   "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1",
                   "PREFECT_LOGGING_LEVEL": "WARNING",
                   # a fresh Prefect home takes ~20 s to start its server on this machine,
                   # Prefect's default limit; a loaded CI machine needs more
                   "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
                   "PREFECT_HOME": tempfile.mkdtemp(prefix="prefect-home-")}.items():
    os.environ.setdefault(key, value)
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def params() -> Params:
    """The project's real params.yaml (paper defaults)."""
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def tiny(params: Params) -> Params:
    """Paper structure, tiny widths: fast enough for CPU tests."""
    model = dataclasses.replace(
        params.model, d_model=32, ff_dim=64, n_heads=2, n_blocks=2, conv_kernel=7,
        subsample_channels=8, pool_dim=32, pool_hidden=16, embedding_dim=16, dropout=0.0)
    train = dataclasses.replace(
        params.train, chunk_s=6.0, hop_s=3.0, works_per_batch=4, versions_per_work=4,
        max_steps=60, checkpoint_every=20, pitch_roll_bins=0, device="cpu")
    return dataclasses.replace(params, model=model, train=train)
