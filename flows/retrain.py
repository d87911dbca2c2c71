"""Scheduled retraining with champion/challenger promotion (a Prefect flow and deployment).

    python -m flows.retrain                 # one run now (ephemeral Prefect server without PREFECT_API_URL)
    python -m flows.retrain --serve         # serve the cron-scheduled deployment (needs `prefect server start`)
    python -m flows.retrain --deploy POOL   # register it with a work pool, for `prefect worker start --pool POOL`

A run does, in order (settings: the `flow:` section of params.yaml):

1. **Lock** — an exclusive `fcntl.flock` on `flow.lock_file`: one retrain run per checkout.
   A run that finds it held waits up to `flow.lock_wait_s`, then returns status `locked`
   with a message naming the file and its holder (pid, host, start time, flow run), having
   touched nothing. The deployment also has a Prefect concurrency limit of 1
   (`flow.on_overlap`: a scheduled run due meanwhile is queued, or cancelled).
2. **Change detection** — content hashes, compared with the inputs recorded by the last
   *successful* run in `flow.state_file`: the manifest's bytes (sha1), every audio file the
   manifest names (sha1; with `flow.trust_mtime` a file whose size and mtime_ns are
   unchanged keeps its recorded sha1) and every params.yaml value (flattened to
   `section.key`). Which stages that reaches is read from dvc.yaml, the pipeline's single
   description: a stage runs when a params key it lists changed, when a dependency is the
   manifest or the audio folder and the data changed, when a dependency is an output of a
   stage that runs, or when one of its outputs is missing. Nothing recorded yet: every
   stage runs. Nothing reached: status `nothing_to_do`, and nothing is written anywhere.
   (Code changes are `dvc repro`'s business: they are not hashed here.)
3. **Stages** — the same `coverhunter.pipeline.<name>.run` functions as dvc.yaml and `flows/pipeline.py`
   (`run_stage`), demo excluded (the catalogue is the manifest in `data.manifest`), each a
   task retried `flow.retries` times; one that still fails fails the run with
   `stage '<name>' failed after N attempt(s): <error>`. `evaluate` runs with
   `promote=False`: it scores and logs the new model but registers nothing.
4. **Champion/challenger** — `coverhunter.pipeline.evaluate.challenge` as the task `promote` (never
   retried: it registers): the registry's champion is downloaded and scored on the same,
   current test sets; the new model is registered and the `champion` alias moves to it
   only if its `data.main_test_set` mAP is higher by at least `flow.promotion_margin`
   (strictly higher, and gain >= margin); the decision (both metric sets, the reason) is
   tagged on both versions (`coverhunter/mlops/registry.py`) and published as the Markdown
   artifact `coverhunter-retrain-decision`.
5. **State** — only then is `flow.state_file` rewritten with the inputs hashed in step 2.
   A failed run leaves it as it was, so the next run retries the same work, and it never
   reaches step 4: the registry and the champion are untouched.

The flow runs in the folder of the params file it is given (the repository root: the
stages resolve their paths from there). Its result is a dict: `status` (`retrained`,
`nothing_to_do` or `locked`), `message`, `stages` ([stage, why]), `changes`, `metrics`,
`decision` and `artifact_id`.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, serve, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.runtime import flow_run
from prefect.schedules import Cron

from coverhunter.catalogue.manifest import ManifestError, read_manifest
from coverhunter.mlops import registry, tracking
from coverhunter.params import FlowParams
from coverhunter.pipeline import evaluate
from coverhunter.pipeline.layout import PARAMS, load
from flows.pipeline import STAGE_ORDER, StageFailed, mlflow_run_tree, run_stage

RETRAIN_STAGES = tuple(s for s in STAGE_ORDER if s != "demo")
DVC_YAML = "dvc.yaml"
ARTIFACT_KEY = "coverhunter-retrain-decision"
DATA_DEPS = ("${data.manifest}", "${data.audio_dir}")   # how dvc.yaml names the catalogue
LOCK_POLL_S = 0.5      # how often a waiting run retries the lock (not a tuning knob)
HASH_BLOCK = 1 << 20   # bytes read at a time when hashing a file
STATE_VERSION = 1
NO_CHANGE = "no input changed"


# ---------------------------------------------------------------- settings

# ---------------------------------------------------------------- the lock

class LockHeld(RuntimeError):
    """Another retrain run holds the lock; the message names the file and the holder."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "(holder unknown)"
    return (f"since {info.get('since', '?')} (pid {info.get('pid', '?')} on "
            f"{info.get('host', '?')}, flow run {info.get('flow_run', '?')})")


@contextlib.contextmanager
def repo_lock(path: Path, wait_s: float = 0.0) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``path`` for the body (POSIX, one machine; the
    lock goes with the process, so a killed run never leaves it held). Waits up to
    ``wait_s`` seconds for a holder, then raises :class:`LockHeld`. The holder's pid,
    host, start time and flow run are written into the file for that message."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    waited = f" (waited {wait_s:g} s)" if wait_s else ""
                    raise LockHeld(f"another retrain run holds {path} {_holder(path)}{waited}; "
                                   "exiting without touching anything") from None
                time.sleep(min(LOCK_POLL_S, left))
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "flow_run": str(flow_run.get_id() or "none")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- change detection

def sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(HASH_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _audio_entry(path: Path, previous: dict | None, trust_mtime: bool) -> dict:
    """``{size, mtime_ns, sha1}`` of one audio file (``sha1: missing`` when absent)."""
    try:
        st = path.stat()
    except OSError:
        return {"size": None, "mtime_ns": None, "sha1": "missing"}
    entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if (trust_mtime and previous and previous.get("size") == st.st_size
            and previous.get("mtime_ns") == st.st_mtime_ns and previous.get("sha1") != "missing"):
        return entry | {"sha1": previous["sha1"]}
    return entry | {"sha1": sha1_file(path)}


def snapshot(raw: dict, previous: dict | None, trust_mtime: bool) -> dict:
    """The inputs a retrain depends on: ``params`` ({section.key: value}), ``manifest``
    (path, sha1) and ``audio`` ({audio_path as written: {size, mtime_ns, sha1}})."""
    manifest = Path(raw["data"]["manifest"])
    before = (previous or {}).get("audio", {})
    audio: dict[str, dict] = {}
    try:
        df = read_manifest(manifest)
        for written, resolved in zip(df["audio_path"], df["audio_file"]):
            if written and resolved:
                audio[written] = _audio_entry(Path(resolved), before.get(written), trust_mtime)
        manifest_sha = sha1_file(manifest)
    except (ManifestError, OSError):   # the validate stage names what is wrong
        manifest_sha = "unreadable"
    return {"params": tracking.flatten_params(raw),
            "manifest": {"path": str(manifest), "sha1": manifest_sha}, "audio": audio}


def diff_inputs(previous: dict | None, current: dict) -> dict:
    """What changed since ``previous`` (None: nothing was recorded yet)."""
    if previous is None:
        return {"first_run": True, "manifest": True, "audio": [], "params": []}
    old_p, new_p = previous.get("params", {}), current["params"]
    old_a, new_a = previous.get("audio", {}), current["audio"]
    audio = sorted(k for k in set(old_a) | set(new_a)
                   if (old_a.get(k) or {}).get("sha1") != (new_a.get(k) or {}).get("sha1"))
    return {"first_run": False,
            "manifest": previous.get("manifest") != current["manifest"] or current["manifest"]["sha1"] == "unreadable",
            "audio": audio,
            "params": sorted(k for k in set(old_p) | set(new_p) if old_p.get(k) != new_p.get(k))}


def dvc_stages(path: str | Path = DVC_YAML) -> dict[str, dict]:
    """The stages of dvc.yaml: ``{name: {params: [keys], deps: [paths], outs: [paths]}}``."""
    spec = yaml.safe_load(Path(path).read_text())["stages"]

    def names(entries: list | None, params: bool = False) -> list[str]:
        out: list[str] = []
        for entry in entries or []:
            if isinstance(entry, str):
                out.append(entry)
            elif isinstance(entry, dict):   # {path: options} or, for params, {file: [keys]}
                for key, value in entry.items():
                    if params and isinstance(value, list):
                        out.extend(value)
                    else:
                        out.append(key)
        return out

    return {name: {"params": names(s.get("params"), params=True), "deps": names(s.get("deps")),
                   "outs": names(s.get("outs")) + names(s.get("metrics")) + names(s.get("plots"))}
            for name, s in spec.items()}


def _under(a: str, b: str) -> bool:
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def plan_stages(changes: dict, raw: dict, stages: dict[str, dict]) -> list[tuple[str, str]]:
    """``[(stage, why)]`` in pipeline order: the stages the changes reach (module notes);
    ``evaluate`` closes any non-empty plan (the new model is always scored)."""
    unknown = set(stages) - set(STAGE_ORDER)
    if unknown:
        raise ValueError(f"{DVC_YAML} has stage(s) {sorted(unknown)} that flows/pipeline.py "
                         "does not run: add them to STAGE_ORDER")
    data_changed = changes["manifest"] or bool(changes["audio"])
    data_paths = set(DATA_DEPS) | {raw["data"]["manifest"], raw["data"]["audio_dir"]}
    plan: list[tuple[str, str]] = []
    for name in RETRAIN_STAGES:
        spec = stages[name]
        keys = [k for k in changes["params"]
                if any(k == p or k.startswith(p + ".") for p in spec["params"])]
        upstream = [s for s, _ in plan
                    if any(_under(d, o) for d in spec["deps"] for o in stages[s]["outs"])]
        missing = [o for o in spec["outs"] if not Path(o).exists()]
        if changes["first_run"]:
            why = "no successful retrain recorded yet"
        elif data_changed and any(d in data_paths for d in spec["deps"]):
            n = len(changes["audio"])
            why = ("the manifest changed" if changes["manifest"] else "") + \
                  (" and " if changes["manifest"] and n else "") + \
                  (f"{n} audio file(s) changed" if n else "")
        elif keys:
            why = f"params changed: {', '.join(keys)}"
        elif upstream:
            why = f"its input from {', '.join(upstream)} is rebuilt"
        elif missing:
            why = f"output(s) missing: {', '.join(missing)}"
        else:
            continue
        plan.append((name, why))
    if plan and plan[-1][0] != "evaluate":
        plan.append(("evaluate", "the new model is scored"))
    return plan


# ---------------------------------------------------------------- state

def read_state(path: Path) -> dict | None:
    """The last successful run's record, or None (absent or from another format)."""
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return state if state.get("version") == STATE_VERSION else None


def write_state(path: Path, state: dict) -> None:
    """Atomic replace: a reader sees the old record or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------- the flow

@contextlib.contextmanager
def _in_repo(params_path: str | Path) -> Iterator[Path]:
    """Work in the params file's folder (the repository root) for the body."""
    params_file = Path(params_path).resolve()
    before = Path.cwd()
    os.chdir(params_file.parent)
    try:
        yield params_file
    finally:
        os.chdir(before)


def _result(status: str, message: str, **extra: Any) -> dict:
    print(message)
    return {"status": status, "message": message, "stages": [], "changes": None,
            "metrics": None, "decision": None, "artifact_id": None} | extra


def _changes_summary(changes: dict, limit: int = 5) -> str:
    if changes["first_run"]:
        return "first retrain in this checkout"
    parts = []
    if changes["manifest"]:
        parts.append("manifest changed")
    if changes["audio"]:
        shown = ", ".join(changes["audio"][:limit])
        more = f" (+{len(changes['audio']) - limit} more)" if len(changes["audio"]) > limit else ""
        parts.append(f"audio changed: {shown}{more}")
    if changes["params"]:
        parts.append(f"params changed: {', '.join(changes['params'][:limit])}"
                     + (" ..." if len(changes["params"]) > limit else ""))
    return "; ".join(parts) or NO_CHANGE


def _report(decision: registry.PromotionDecision, plan: list, changes: dict) -> str:
    lines = [registry.decision_markdown(decision, "Retraining: champion/challenger decision"),
             f"- inputs: {_changes_summary(changes)}",
             "- stages run: " + ", ".join(f"{s} ({why})" for s, why in plan)]
    return "\n".join(lines) + "\n"


def _run_pipeline(params_file: Path, cfg: FlowParams, plan: list) -> tuple[dict, Any]:
    """The planned stages, then the champion/challenger task, in one MLflow run tree."""
    with mlflow_run_tree():
        evaluated = None
        for name, why in plan:
            print(f"stage {name}: {why}")
            options = {"promote": False} if name == "evaluate" else {}
            out = run_stage(name, str(params_file), cfg.retries, cfg.retry_delay_s, **options)
            if name == "evaluate":
                evaluated = out
        final = evaluated["model"]
        try:
            decision = task(evaluate.challenge, name="promote")(
                str(params_file), evaluated["model_uri"], evaluated["metrics"][final])
        except Exception as err:
            raise StageFailed("promote", 1, err) from err
    return evaluated, decision


def _retrain_locked(params_file: Path, cfg: FlowParams) -> dict:
    _, raw = load(params_file)
    previous = read_state(Path(cfg.state_file))
    inputs = snapshot(raw, (previous or {}).get("inputs"), cfg.trust_mtime)
    changes = diff_inputs((previous or {}).get("inputs"), inputs)
    plan = plan_stages(changes, raw, dvc_stages())
    if not plan:
        changed = _changes_summary(changes)
        detail = (f"the manifest, its {len(inputs['audio'])} audio files and params.yaml are "
                  "unchanged" if changed == NO_CHANGE else f"{changed}, which no stage reads")
        return _result("nothing_to_do", f"nothing to do since the last successful retrain "
                       f"({previous['finished_at']}): {detail}", changes=changes)
    print(f"retraining: {_changes_summary(changes)}")
    evaluated, decision = _run_pipeline(params_file, cfg, plan)
    write_state(Path(cfg.state_file), {
        "version": STATE_VERSION, "inputs": inputs, "flow_run": str(flow_run.get_id() or "none"),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "registered_version": decision.version, "decision": decision.alias})
    report = _report(decision, plan, changes)
    artifact_id = create_markdown_artifact(report, key=ARTIFACT_KEY,
                                           description="champion/challenger decision of a retrain run")
    print(report)
    return _result("retrained", f"retrained ({len(plan)} stages); v{decision.version} is "
                   f"{decision.alias}: {decision.reason}", stages=[list(p) for p in plan], changes=changes,
                   metrics=evaluated["metrics"], decision=dataclasses.asdict(decision),
                   artifact_id=str(artifact_id))


@flow(name="coverhunter-retrain", log_prints=True)
def retrain(params_path: str = str(PARAMS)) -> dict:
    """Retrain when the manifest, its audio or params.yaml changed; promote the new model
    only if it beats the champion on the current test sets (module docstring)."""
    with _in_repo(params_path) as params_file:
        cfg = load(params_file)[0].flow
        try:
            with repo_lock(Path(cfg.lock_file), cfg.lock_wait_s):
                return _retrain_locked(params_file, cfg)
        except LockHeld as held:
            return _result("locked", str(held))


# ---------------------------------------------------------------- deployment

def _deployment_options(params_path: str | Path) -> tuple[FlowParams, dict]:
    params_file = Path(params_path).resolve()
    cfg = load(params_file)[0].flow
    strategy = ConcurrencyLimitStrategy[cfg.on_overlap.upper()]
    return cfg, {"schedules": [Cron(cfg.cron, timezone=cfg.timezone)],
                 "concurrency_limit": ConcurrencyLimitConfig(limit=1, collision_strategy=strategy),
                 "description": "Retrain when the catalogue or params.yaml changed; "
                                "champion/challenger promotion (flows/retrain.py)",
                 "tags": ["coverhunter", "retrain"]}


def build_deployment(params_path: str | Path = PARAMS):
    """The scheduled deployment (for ``serve``): name ``flow.deployment``, cron
    ``flow.cron`` in ``flow.timezone``, at most one run at a time (``flow.on_overlap``),
    parameter ``params_path`` = this params file (absolute: runs work in its folder)."""
    cfg, options = _deployment_options(params_path)
    return retrain.to_deployment(name=cfg.deployment,
                                 parameters={"params_path": str(Path(params_path).resolve())},
                                 **options)


def deploy_to_pool(work_pool: str, params_path: str | Path = PARAMS):
    """Register the same deployment with a work pool, its code taken from this checkout's
    folder (the worker's pull step changes into it, so the worker runs on a machine that
    has this folder: ``prefect worker start --pool POOL``); returns the deployment id.
    The ``params_path`` parameter is then relative to that folder."""
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
