"""Where the pipeline's steps read and write, relative to the project folder (DVC runs
every stage there), and the small helpers they share."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

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
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def validated_manifest() -> pd.DataFrame:
    if not VALIDATED.exists():
        raise FileNotFoundError(f"{VALIDATED} is missing: run the validate stage first (dvc repro validate)")
    return pd.read_parquet(VALIDATED)


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
