"""Scheduled retraining with champion/challenger promotion (a Prefect flow and deployment).

    python -m flows.retrain [--serve | --deploy POOL]   # now; or serve / register the schedule

A run (settings: `flow:`; parts: `coverhunter.mlops.retrain`) takes the checkout's lock
(held: status `locked`, nothing touched), asks `dvc status` which stages are out of date
(data, params, code; none: `nothing_to_do`), runs the first as a retried task, records it
in dvc.lock and asks again; `evaluate` runs last, without promoting. A failed stage fails
the run; the next resumes there. Then task `promote`: the champion, scored now on the same
sets, keeps the alias unless the new model's `data.main_test_set` mAP is higher by
`flow.promotion_margin`; a promotion rebuilds the index; then `flow.state_file` is written.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
from pathlib import Path

from prefect import flow, serve, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.runtime import flow_run
from prefect.schedules import Cron

from coverhunter.mlops import promotion
from coverhunter.mlops.retrain import LockHeld, out_of_date, read_state, record, repo_lock, write_state
from coverhunter.params import FlowParams
from coverhunter.pipeline import evaluate
from coverhunter.pipeline.layout import PARAMS, in_folder, load
from flows.pipeline import StageFailed, mlflow_run_tree, run_stage

ARTIFACT_KEY = "coverhunter-retrain-decision"


def _result(status: str, message: str, **extra) -> dict:
    print(message)
    return {"status": status, "message": message, "stages": [], "metrics": None,
            "decision": None, "artifact_id": None} | extra


def _run_stages(params_file: Path, cfg: FlowParams, first: dict[str, str]) -> tuple[list, dict]:
    """Out-of-date stages one at a time, each recorded in dvc.lock once it succeeded."""
    ran, pending, evaluated = [], first, None
    while pending or ran[-1][0] != "evaluate":
        name, why = next(iter(pending.items())) if pending else ("evaluate", "the new model is scored")
        if name in (s for s, _ in ran):
            raise RuntimeError(f"stage {name} is still out of date after it ran: {why}")
        print(f"stage {name}: {why}")
        options = {"promote": False} if name == "evaluate" else {}
        out = run_stage(name, str(params_file), cfg.retries, cfg.retry_delay_s, **options)
        record(name)
        ran.append((name, why))
        evaluated = out if name == "evaluate" else evaluated
        pending = out_of_date()
    return ran, evaluated


def _retrain_locked(params_file: Path, cfg: FlowParams) -> dict:
    previous = read_state(cfg.state_file)
    pending = out_of_date()
    if not pending:
        since = f" since the last successful retrain ({previous['finished_at']})" if previous else ""
        return _result("nothing_to_do", f"nothing to do{since}: data, params and code are "
                       "unchanged for every stage (dvc status)")
    with mlflow_run_tree():
        ran, evaluated = _run_stages(params_file, cfg, pending)
        final = evaluated["model"]
        try:
            decision = task(evaluate.challenge, name="promote")(
                str(params_file), evaluated["model_uri"], evaluated["metrics"][final])
        except Exception as err:
            raise StageFailed("promote", 1, err) from err
        if decision.promoted:          # identify answers with the new champion's vectors
            run_stage("index", str(params_file), cfg.retries, cfg.retry_delay_s)
            record("index")
            ran.append(("index", "a new champion"))
    write_state(cfg.state_file, {
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "flow_run": str(flow_run.get_id() or "none"), "stages": [list(s) for s in ran],
        "registered_version": decision.version, "decision": decision.alias})
    report = (promotion.decision_markdown(decision, "Retraining: champion/challenger decision")
              + "\n- stages run: " + ", ".join(f"{s} ({why})" for s, why in ran) + "\n")
    print(report)
    artifact_id = create_markdown_artifact(report, key=ARTIFACT_KEY, description="retrain decision")
    return _result("retrained", f"retrained ({len(ran)} stages); v{decision.version} is "
                   f"{decision.alias}: {decision.reason}", stages=[list(s) for s in ran],
                   metrics=evaluated["metrics"], decision=dataclasses.asdict(decision),
                   artifact_id=str(artifact_id))


@flow(name="coverhunter-retrain", log_prints=True)
def retrain(params_path: str = str(PARAMS)) -> dict:
    """Retrain what DVC finds out of date; promote only a better model (module docstring)."""
    with in_folder(Path(params_path).resolve().parent):
        params_file = Path(params_path).resolve()
        cfg = load(params_file)[0].flow
        try:
            with repo_lock(cfg.lock_file, cfg.lock_wait_s, str(flow_run.get_id() or "none")):
                return _retrain_locked(params_file, cfg)
        except LockHeld as held:
            return _result("locked", str(held))


def _deployment_options(params_path: str | Path) -> tuple[FlowParams, dict]:
    cfg = load(Path(params_path).resolve())[0].flow
    strategy = ConcurrencyLimitStrategy[cfg.on_overlap.upper()]
    return cfg, {"schedules": [Cron(cfg.cron, timezone=cfg.timezone)],
                 "concurrency_limit": ConcurrencyLimitConfig(limit=1, collision_strategy=strategy),
                 "description": "Retrain what changed; champion/challenger promotion (flows/retrain.py)",
                 "tags": ["coverhunter", "retrain"]}


def build_deployment(params_path: str | Path = PARAMS):
    """The scheduled deployment (``serve``): ``flow.deployment``, ``flow.cron``, one run at a time."""
    cfg, options = _deployment_options(params_path)
    return retrain.to_deployment(name=cfg.deployment,
                                 parameters={"params_path": str(Path(params_path).resolve())}, **options)


def deploy_to_pool(work_pool: str, params_path: str | Path = PARAMS):
    """The same deployment on a work pool, its code from this checkout's folder; returns its id."""
    cfg, options = _deployment_options(params_path)
    root = Path(params_path).resolve().parent
    source = retrain.from_source(source=str(root), entrypoint="flows/retrain.py:retrain")
    return source.deploy(name=cfg.deployment, work_pool_name=work_pool, build=False, push=False,
                         parameters={"params_path": Path(params_path).resolve().name},
                         print_next_steps=False, ignore_warnings=True, **options)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(PARAMS))
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--serve", action="store_true",
                      help="serve the scheduled deployment until interrupted (PREFECT_API_URL: a server)")
    mode.add_argument("--deploy", metavar="POOL", help="register the deployment with a work pool")
    args = ap.parse_args()
    if args.serve:
        serve(build_deployment(args.params))
    elif args.deploy:
        print(f"deployment {deploy_to_pool(args.deploy, args.params)} registered with pool "
              f"{args.deploy}: run `prefect worker start --pool {args.deploy}`")
    else:
        out = retrain(args.params)
        print(json.dumps({k: out[k] for k in ("status", "message", "stages")}, indent=1))


if __name__ == "__main__":
    main()
