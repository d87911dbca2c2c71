"""Print the pipeline's results: the metrics table and how to open MLflow (used by `make demo`)."""
from __future__ import annotations

import json
from pathlib import Path

from coverhunter.mlops import tracking
from coverhunter.reporting.tables import metrics_table

from stages.common import REPORTS


def main() -> None:
    metrics = json.loads((REPORTS / "metrics.json").read_text())
    print("\nRetrieval metrics (reports/metrics.json; leave-one-out within each set):\n")
    print(metrics_table(metrics))
    print(f"\nMLflow: mlflow ui --backend-store-uri {tracking.tracking_uri(Path.cwd())}")
    print("then open http://127.0.0.1:5000 (experiment 'coverhunter'; model 'coverhunter' in Models).")


if __name__ == "__main__":
    main()
