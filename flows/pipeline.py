"""The whole pipeline as a Prefect flow: demo → validate → extract → train_coarse → align →
train_fine → evaluate.

Each task calls the very function its DVC stage runs (`stages.NAME.run`). Extraction (I/O
heavy, the step most likely to meet a transient failure) retries `flow.retries` times.
The flow returns the evaluation result (metrics per model and test set, the registry
decision) and publishes the metrics as a Markdown artifact. Run it with
`python -m flows.pipeline` (an ephemeral Prefect server starts when no API URL is set).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from coverhunter.report import metrics_table
from coverhunter import tracking
from stages import align, demo, evaluate, extract, train, validate
from stages.common import PARAMS, load


@flow(name="coverhunter-pipeline", log_prints=True)
def pipeline(params_path: str = str(PARAMS), build_demo: bool = True, progress: bool = False) -> dict:
    """Run every stage in order; returns the evaluate stage's result."""
    _, raw = load(params_path)
    retries, delay = raw["flow"]["retries"], raw["flow"]["retry_delay_s"]
    # one MLflow parent run per flow run: the stages read this key
    key = f"prefect-{flow_run.get_id() or 'local'}"
    previous = os.environ.get(tracking.PIPELINE_ENV)
    os.environ[tracking.PIPELINE_ENV] = key
    try:
        if build_demo:
            task(demo.run, name="demo")(params_path)
        task(validate.run, name="validate")(params_path)
        task(extract.run, name="extract", retries=retries, retry_delay_seconds=delay)(
            params_path, progress=progress)
        task(train.run, name="train_coarse")(params_path, "coarse", progress=progress)
        task(align.run, name="align")(params_path, progress=progress)
        task(train.run, name="train_fine")(params_path, "fine", progress=progress)
        result = task(evaluate.run, name="evaluate")(params_path)   # ends the parent run
    except BaseException:
        tracking.configure(Path.cwd())
        tracking.end_parent_run(key, "FAILED")   # this flow run's tree is closed as failed
        raise
    finally:
        if previous is None:
            os.environ.pop(tracking.PIPELINE_ENV, None)
        else:
            os.environ[tracking.PIPELINE_ENV] = previous
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
