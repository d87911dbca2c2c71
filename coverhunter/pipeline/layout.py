"""Where the pipeline's steps read and write, relative to the project folder (DVC runs
every stage there), and the small helpers they share."""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from coverhunter.digest import json_sha1
from coverhunter.params import load  # noqa: F401  (the one params reader, re-exported for stages)

PARAMS = Path("params.yaml")
ARTIFACTS = Path("artifacts")
VALIDATED = ARTIFACTS / "validated" / "manifest.parquet"   # validate → everything after it
FEATURES = ARTIFACTS / "features"                          # extract (per recording + index)
ALIGN = ARTIFACTS / "align"                                # align: chunk alignments [II-D]
MODELS = ARTIFACTS / "models"                              # train stages: final models
WORK = ARTIFACTS / "work"                                  # resumable checkpoints (scratch)
REPORTS = Path("reports")
PLOTS = REPORTS / "plots"
SKIPPED = "skipped.json"        # written instead of a model when a stage is switched off


def fingerprint(*parts: Any) -> str:
    """Stable short hash of JSON-serialisable parts."""
    return json_sha1(parts, 12)


def validated_manifest() -> pd.DataFrame:
    if not VALIDATED.exists():
        raise FileNotFoundError(f"{VALIDATED} is missing: run the validate stage first (dvc repro validate)")
    return pd.read_parquet(VALIDATED)


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


@contextlib.contextmanager
def in_folder(folder: str | Path) -> Iterator[None]:
    """Work in ``folder`` (the project folder: the pipeline's paths are relative to it)."""
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)
