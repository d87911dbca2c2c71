"""The pipeline's results as text: the metrics table and how to open MLflow (`make demo`
prints it at the end)."""
from __future__ import annotations

import json
from pathlib import Path

from coverhunter.mlops import tracking
from coverhunter.pipeline.layout import REPORTS
from coverhunter.reporting.tables import metrics_table


def summary() -> str:
    path = REPORTS / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the pipeline first (dvc repro)")
    metrics = json.loads(path.read_text())
    return (f"\nRetrieval metrics ({path}; leave-one-out within each set):\n\n"
            f"{metrics_table(metrics)}\n\n"
            f"MLflow: mlflow ui --backend-store-uri {tracking.tracking_uri(Path.cwd())}\n"
            "then open http://127.0.0.1:5000 (experiment 'coverhunter'; model 'coverhunter' in Models).")
