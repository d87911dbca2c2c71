"""The whole pipeline as a Prefect flow: demo → validate → extract → train_coarse → align →
train_fine → evaluate → index.

Each task calls the very function its DVC stage runs (`coverhunter.pipeline.NAME.run`, looked up when
the task runs). This module also holds the task wiring the retraining flow
(`flows/retrain.py`) shares: `run_stage` (one stage as a task, with retries and an error
that names the stage) and `mlflow_run_tree` (one MLflow parent run per flow run).

Every stage is retried `flow.retries` times, `flow.retry_delay_s` apart, except when it
raised a ValueError (bad params or data: the same input fails the same way) and except
`evaluate` here, which registers a model (a retry would register it twice). The flow
returns the evaluation result (metrics per model and test set, the registry decision) and
publishes the metrics as a Markdown artifact. Run it with `python -m flows.pipeline` (an
ephemeral Prefect server starts when no API URL is set).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from coverhunter.mlops import tracking
from coverhunter.pipeline.layout import PARAMS, load
from coverhunter.reporting.tables import metrics_table

STAGE_ORDER = ("demo", "validate", "extract", "train_coarse", "align", "train_fine", "evaluate", "index")
NOT_RETRIED = (ValueError,)   # bad params or data (a ManifestError is one): fails at once


class StageFailed(RuntimeError):
    """A stage that still failed after its retries; the message names the stage."""

    def __init__(self, stage: str, attempts: int, error: BaseException):
        self.stage, self.attempts, self.error = stage, attempts, error
        super().__init__(f"stage '{stage}' failed after {attempts} attempt(s): "
                         f"{type(error).__name__}: {error}")


def stage_call(name: str, params_path: str, progress: bool = False,
               **options: Any) -> tuple[Any, tuple, dict]:
    """``(function, args, kwargs)`` of DVC stage ``name``: ``coverhunter.pipeline.<module>.run``, looked
    up now (so a test's monkeypatch is honoured); ``options`` go to the function."""
    module = {"train_coarse": "train", "train_fine": "train"}.get(name, name)
    if name not in STAGE_ORDER:
        raise ValueError(f"unknown stage {name!r}: one of {', '.join(STAGE_ORDER)}")
    fn = importlib.import_module(f"coverhunter.pipeline.{module}").run
    args: tuple = (params_path,)
    kwargs: dict = dict(options)
    if name in ("train_coarse", "train_fine"):
        args += (name.removeprefix("train_"),)
    if name in ("validate", "extract", "train_coarse", "train_fine", "align", "index"):
        kwargs.setdefault("progress", progress)
    return fn, args, kwargs


def _retry_unless_bad_input(task_, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry unless the stage raised a ValueError."""
    return not isinstance(getattr(state, "data", None), NOT_RETRIED)


def run_stage(name: str, params_path: str, retries: int, retry_delay_s: float,
              progress: bool = False, **options: Any) -> Any:
    """Run stage ``name`` as a Prefect task with ``retries``; returns the stage's result.
    Raises :class:`StageFailed` (stage, attempts, error) once the retries are spent."""
    fn, args, kwargs = stage_call(name, params_path, progress, **options)
    stage_task = task(fn, name=name, retries=retries, retry_delay_seconds=retry_delay_s,
                      retry_condition_fn=_retry_unless_bad_input)
    try:
        return stage_task(*args, **kwargs)
    except Exception as err:
        attempts = 1 if isinstance(err, NOT_RETRIED) else 1 + retries
        raise StageFailed(name, attempts, err) from err


@contextlib.contextmanager
def mlflow_run_tree() -> Iterator[str]:
    """One MLflow parent run for this flow run (key ``prefect-<flow run id>``, exported
    as ``COVERHUNTER_PIPELINE_RUN`` for the stages); the parent ends ``FINISHED`` when the
    body succeeds and ``FAILED`` when it raises. Yields the key."""
    key = f"prefect-{flow_run.get_id() or 'local'}"
    previous = os.environ.get(tracking.PIPELINE_ENV)
    os.environ[tracking.PIPELINE_ENV] = key
    try:
        yield key
        tracking.configure(Path.cwd())
        tracking.end_parent_run(key)
    except BaseException:
        tracking.configure(Path.cwd())
        tracking.end_parent_run(key, "FAILED")   # this flow run's tree is closed as failed
        raise
    finally:
        if previous is None:
            os.environ.pop(tracking.PIPELINE_ENV, None)
        else:
            os.environ[tracking.PIPELINE_ENV] = previous


@flow(name="coverhunter-pipeline", log_prints=True)
def pipeline(params_path: str = str(PARAMS), build_demo: bool = True, progress: bool = False) -> dict:
    """Run every stage in order; returns the evaluate stage's result."""
    p, _ = load(params_path)
    retries, delay = p.flow.retries, p.flow.retry_delay_s
    result = None
    with mlflow_run_tree():
        for name in STAGE_ORDER:
            if name == "demo" and not build_demo:
                continue
            # evaluate registers and promotes the model: never retried
            out = run_stage(name, params_path, 0 if name == "evaluate" else retries, delay, progress)
            result = out if name == "evaluate" else result
    create_markdown_artifact(metrics_table(result["metrics"]), key="coverhunter-metrics",
                             description="retrieval metrics per model and test set")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default=str(PARAMS))
    ap.add_argument("--no-demo", action="store_true", help="skip rendering the demo catalogue")
    args = ap.parse_args()
    result = pipeline(args.params, build_demo=not args.no_demo, progress=True)
    print(metrics_table(result["metrics"]))
    print(result["registered"])


if __name__ == "__main__":
    main()
