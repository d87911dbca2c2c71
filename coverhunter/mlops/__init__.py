"""MLOps: MLflow tracking, the model registry and promotion, the ablation, pretraining and
retraining parts; the only room that imports mlflow or runs dvc.

Importing any module here first runs this: MLflow's telemetry and its artifact-download
progress bars are switched off (unless the environment already says otherwise) before
mlflow is imported. MLflow only honours ``DO_NOT_TRACK=true`` (``1`` is ignored)."""
import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")   # no \r bars in logs
