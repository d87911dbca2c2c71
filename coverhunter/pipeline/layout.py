"""Where the pipeline's steps read and write, relative to the project folder (DVC runs
every stage there), and the small helpers they share."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from coverhunter.atomic import write_atomic
from coverhunter.digest import json_sha1
from coverhunter.params import load  # noqa: F401  (the one params reader, re-exported for stages)

log = logging.getLogger(__name__)

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
AS_TRAINED = "as_trained.pt"   # a fine model before fine.pretrained_share (pipeline/train.py)


def fingerprint(*parts: Any) -> str:
    """Stable short hash of JSON-serialisable parts."""
    return json_sha1(parts, 12)


def validated_manifest() -> pd.DataFrame:
    if not VALIDATED.exists():
        raise FileNotFoundError(f"{VALIDATED} is missing: run the validate stage first (dvc repro validate)")
    return pd.read_parquet(VALIDATED)


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as strict JSON, atomically. A value that is not a finite number
    (a metric of a set with no scorable query) becomes ``null``, with a warning naming it."""
    bad: list[str] = []
    empty: list[str] = []

    def finite(node: Any, where: str) -> Any:
        if isinstance(node, dict):
            if node.get("n_queries") == 0:
                empty.append(where)
            return {k: finite(v, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [finite(v, f"{where}[{i}]") for i, v in enumerate(node)]
        if isinstance(node, float) and not math.isfinite(node):
            bad.append(where)
            return None
        return node

    clean = finite(data, "")
    if bad:
        why = (f"; {', '.join(empty)} had no query with another version of its work in the set"
               if empty else "")
        log.warning("%s: %s %s not a number, written as null%s", path,
                    ", ".join(bad[:8]) + (" …" if len(bad) > 8 else ""),
                    "is" if len(bad) == 1 else "are", why)
    return write_atomic(path, json.dumps(clean, indent=2, sort_keys=True, allow_nan=False) + "\n")


@contextlib.contextmanager
def in_folder(folder: str | Path) -> Iterator[None]:
    """Work in ``folder`` (the project folder: the pipeline's paths are relative to it)."""
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)
