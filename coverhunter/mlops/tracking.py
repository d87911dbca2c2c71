"""MLflow tracking for the pipeline: one parent run per pipeline run, one child run per stage.

DVC runs each stage as its own process (``python -m stages.X``). They all log into one run
tree, keyed by a *pipeline key*:

- ``pipeline_key(params)``: the environment variable ``COVERHUNTER_PIPELINE_RUN`` when it is
  set (a Makefile or a Prefect flow sets it once per pipeline invocation); otherwise
  ``sha256("<git commit>\\n<canonical JSON of params>")[:16]``, so every stage of one
  ``dvc repro`` (same commit, same params.yaml) computes the same key without talking to
  the others. Pass the *whole* params dict, not a stage's slice, or stages disagree.
- ``parent_run(key)``: the run in the experiment tagged ``pipeline_key=<key>`` whose status
  is not ``FAILED`` (``FINISHED`` is reused too; deleted runs are ignored), else a new one
  named ``pipeline <key[:12]>``. Lookup and creation are idempotent: when two processes race
  to create the parent, each re-reads after creating, all keep the oldest run
  (start time, then run id) and a loser deletes its own duplicate.
- ``stage_run(stage, key, params, tags)``: a child run (tag ``mlflow.parentRunId``) that
  logs ``params`` flattened to ``section.key`` and the tags ``git_commit``,
  ``dvc_params_hash``, ``pipeline_key`` and ``stage``.

``dvc_params_hash`` / ``params_hash(params)``: the SHA-256 hex digest of the params dict
serialised as canonical JSON (keys sorted, separators ``,`` and ``:``, tuples as lists,
dataclasses as dicts, anything else non-JSON through ``str``). It depends only on the
values, never on key order or on the process, so equal params give equal hashes in every
stage and on every machine.

Telemetry is off: the package (``coverhunter/mlops/__init__.py``) sets it before mlflow loads.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

PIPELINE_ENV = "COVERHUNTER_PIPELINE_RUN"
DEFAULT_EXPERIMENT = "coverhunter"
KEY_TAG = "pipeline_key"
logger = logging.getLogger(__name__)
PID_TAG, HOST_TAG = "pid", "host"        # who runs a stage: a run whose process died is KILLED
PARENT_TAG = "mlflow.parentRunId"
_KEY_RE = re.compile(r"^[A-Za-z0-9_.:@+\-]{1,200}$")

_state: dict[str, Any] = {"experiment_id": None, "uri": None, "exported": None}
_loggers: dict[str, list[StepLogger]] = {}
_lock = threading.Lock()


# ---------------------------------------------------------------- store and experiment

def tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<absolute root>/mlflow.db``.

    ``mlflow.set_tracking_uri`` exports ``MLFLOW_TRACKING_URI`` itself (for subprocesses);
    a value exported that way by ``configure`` is not mistaken for the user's choice, so a
    later ``configure(other_root)`` in the same process moves to the other store."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env and env != _state["exported"]:
        return env
    return f"sqlite:///{(Path(root).resolve() / 'mlflow.db').as_posix()}"


def _is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def configure(root: Path, experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Point MLflow (tracking and registry) at the project's store and make sure
    ``experiment`` exists; returns its id and makes it the active experiment.

    A new experiment on a local/database store gets the artifact location
    ``<root>/mlartifacts`` (MLflow 3 refuses the file store, and a sqlite store has no
    default artifact root that survives a change of working directory). On a tracking
    server (``http(s)://``) the server chooses the artifact location. An existing
    experiment keeps its location. Safe to call from several processes at once."""
    root = Path(root).resolve()
    env = os.environ.get("MLFLOW_TRACKING_URI")
    user_chose = bool(env) and env != _state["exported"]
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    _state["exported"] = None if user_chose else uri
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        location = None if _is_remote(uri) else (root / "mlartifacts").as_uri()
        try:
            client.create_experiment(experiment, artifact_location=location)
        except MlflowException:   # created meanwhile by another process
            pass
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise RuntimeError(f"could not create MLflow experiment {experiment!r} at {uri}")
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    mlflow.set_experiment(experiment_id=exp.experiment_id)
    _state.update(experiment_id=exp.experiment_id, uri=uri)
    return exp.experiment_id


def _experiment_id() -> str:
    """The configured experiment; configures ``Path.cwd()`` (DVC runs stages from the
    repository root) when nothing was configured in this process."""
    if _state["experiment_id"] is None or _state["uri"] != mlflow.get_tracking_uri():
        configure(Path.cwd())
    return _state["experiment_id"]


# ---------------------------------------------------------------- keys, hashes, params

def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return value.as_posix()
    if hasattr(value, "item") and callable(value.item):   # numpy / torch scalars
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return value


def _canonical_json(params: Any) -> str:
    return json.dumps(_plain(params), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, default=str)


def params_hash(params: Mapping[str, Any] | Any) -> str:
    """SHA-256 hex digest of ``params`` as canonical JSON (see the module docstring)."""
    return hashlib.sha256(_canonical_json(params).encode()).hexdigest()


def flatten_params(params: Mapping[str, Any] | Any, prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 1e-3}}`` → ``{"train.lr": "0.001"}``; lists stay one value."""
    out: dict[str, str] = {}
    for key, value in _plain(params).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_params(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return out


def git_commit(cwd: str | Path | None = None) -> str:
    """``git rev-parse HEAD`` in ``cwd`` (default: the working directory), else ``unknown``."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pipeline_key(params: Mapping[str, Any] | Any) -> str:
    """``$COVERHUNTER_PIPELINE_RUN`` when set, else the first 16 hex digits of
    ``sha256(git commit + "\\n" + canonical JSON of params)``."""
    env = os.environ.get(PIPELINE_ENV, "").strip()
    if env:
        return _check_key(env)
    digest = hashlib.sha256(f"{git_commit()}\n{_canonical_json(params)}".encode())
    return digest.hexdigest()[:16]


def _check_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise ValueError(f"pipeline key {key!r}: use 1-200 characters from A-Z a-z 0-9 _ . : @ + -")
    return key


# ---------------------------------------------------------------- the run tree

def _find_parents(client: MlflowClient, experiment_id: str, key: str) -> list:
    runs = client.search_runs([experiment_id], filter_string=f"tags.{KEY_TAG} = '{key}'",
                              max_results=1000)
    runs = [r for r in runs
            if PARENT_TAG not in r.data.tags
            and r.info.status != RunStatus.to_string(RunStatus.FAILED)]
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def parent_run(key: str) -> str:
    """The id of the parent run for pipeline ``key``: found by the tag
    ``pipeline_key=<key>`` (a top-level run, status not ``FAILED``) or created."""
    key = _check_key(key)
    experiment_id = _experiment_id()
    client = MlflowClient()
    found = _find_parents(client, experiment_id, key)
    if found:
        return found[0].info.run_id
    commit = git_commit()
    created = client.create_run(experiment_id, run_name=f"pipeline {key[:12]}",
                                tags={KEY_TAG: key, "git_commit": commit,
                                      "mlflow.source.git.commit": commit})
    mine = created.info.run_id
    # Another process may have created one at the same moment: everyone keeps the oldest.
    found = _find_parents(client, experiment_id, key)
    keep = found[0].info.run_id if found else mine
    if keep != mine:
        client.delete_run(mine)
    return keep


def end_parent_run(key: str, status: str = "FINISHED") -> None:
    """Mark the pipeline's parent run ``FINISHED`` (or ``FAILED``, ``KILLED``). A later
    ``parent_run(key)`` reuses a finished parent and creates a new one after a failed one.
    A failing *stage* never fails its parent by itself: DVC re-runs only that stage, and
    its retry must land in the same tree as the stages that succeeded."""
    client = MlflowClient()
    for run in _find_parents(client, _experiment_id(), _check_key(key)):
        client.set_terminated(run.info.run_id, status=status)


def mark_killed(stage_name: str) -> list[str]:
    """End as ``KILLED`` the runs of ``stage_name`` still ``RUNNING`` whose process, on this
    host, is gone (a ``kill -9`` or a power cut ends no run); returns their ids. Runs
    started on other hosts are left alone: from here their process cannot be seen."""
    client, host, killed = MlflowClient(), socket.gethostname(), []
    for run in client.search_runs([_experiment_id()], f"tags.stage = '{stage_name}' "
                                  "and attributes.status = 'RUNNING'"):
        tags = run.data.tags
        if tags.get(HOST_TAG) == host and tags.get(PID_TAG, "").isdigit() \
                and not _alive(int(tags[PID_TAG])):
            client.set_terminated(run.info.run_id, status="KILLED")
            killed.append(run.info.run_id)
    if killed:
        logger.warning("MLflow: %d run(s) of %s whose process died marked KILLED", len(killed), stage_name)
    return killed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:    # someone else's live process
        return True
    return True


@contextlib.contextmanager
def stage_run(stage_name: str, key: str, params: Mapping[str, Any] | Any,
              tags: Mapping[str, Any] | None = None) -> Iterator[mlflow.ActiveRun]:
    """A child run named ``stage_name`` under ``parent_run(key)``; on exit it flushes the
    step loggers bound to it and ends as ``FINISHED``, or ``FAILED`` when the body raised.

    Logs ``params`` (a dict or a dataclass such as ``Params``) flattened to
    ``section.key``, and the tags ``stage``, ``pipeline_key``, ``git_commit`` and
    ``dvc_params_hash`` (``params_hash(params)``) besides ``tags``."""
    parent = parent_run(key)
    mark_killed(stage_name)
    all_tags = {"stage": stage_name, KEY_TAG: key, "git_commit": git_commit(),
                "dvc_params_hash": params_hash(params), PID_TAG: str(os.getpid()),
                HOST_TAG: socket.gethostname()}
    all_tags.update({k: str(v) for k, v in (tags or {}).items()})
    run = mlflow.start_run(experiment_id=_experiment_id(), run_name=stage_name,
                           parent_run_id=parent, tags=all_tags)
    run_id = run.info.run_id
    status = "FAILED"
    try:
        flat = flatten_params(params)
        if flat:
            mlflow.log_params(flat)
        yield run
        status = "FINISHED"
    finally:
        try:
            for logger in _loggers.pop(run_id, []):
                logger.flush()
        finally:
            mlflow.end_run(status=status)


# ---------------------------------------------------------------- step metrics

class StepLogger:
    """``callback(step, {"total": ..., "focal": ...})`` for ``coverhunter.training.loop.train``:
    buffers each step's values and writes them every ``every`` steps in one
    ``MlflowClient.log_batch`` call (``step=`` set on each metric). ``flush()`` writes the
    rest; ``stage_run`` flushes its loggers on exit."""

    def __init__(self, every: int, run_id: str, prefix: str = ""):
        if every < 1:
            raise ValueError("every must be >= 1")
        self.every, self.run_id, self.prefix = every, run_id, prefix
        self._buffer: list[Metric] = []
        self._since_flush = 0

    def __call__(self, step: int, metrics: Mapping[str, float]) -> None:
        ts = int(time.time() * 1000)
        self._buffer.extend(Metric(f"{self.prefix}{k}", float(v), ts, int(step))
                            for k, v in metrics.items())
        self._since_flush += 1
        if self._since_flush >= self.every:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            MlflowClient().log_batch(self.run_id, metrics=self._buffer)
        self._buffer, self._since_flush = [], 0


def step_logger(every: int = 50, run_id: str | None = None,
                prefix: str = "") -> Callable[[int, dict], None]:
    """A ``StepLogger`` for ``run_id`` (default: the active run, e.g. ``stage_run``'s)."""
    if run_id is None:
        active = mlflow.active_run()
        if active is None:
            raise RuntimeError("step_logger needs an active run (inside stage_run) or run_id")
        run_id = active.info.run_id
    logger = StepLogger(every, run_id, prefix)
    with _lock:
        _loggers.setdefault(run_id, []).append(logger)
    return logger


def log_step_metrics(history: list[Mapping[str, float]], run_id: str | None = None,
                     first_step: int = 1, prefix: str = "") -> None:
    """Log a whole history (``TrainResult.history``: one dict per step, the first being
    ``first_step``) after the fact, in batches. Use it when training resumed from a
    checkpoint, where a callback saw only the steps after the resume."""
    logger = StepLogger(max(1, len(history)), run_id or _active_run_id(), prefix)
    for i, metrics in enumerate(history):
        logger(first_step + i, metrics)
    logger.flush()


def _active_run_id() -> str:
    active = mlflow.active_run()
    if active is None:
        raise RuntimeError("no active run: call inside stage_run or pass run_id")
    return active.info.run_id


def log(metrics: Mapping[str, float] | None = None, artifacts: Iterable[str | Path] = (),
        tags: Mapping[str, str] | None = None, texts: Mapping[str, str] | None = None) -> None:
    """Log to the active run (a :func:`stage_run`): metrics, files, tags and text files
    (``{artifact name: text}``). The pipeline's steps log through this, never mlflow."""
    if metrics:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
    for path in artifacts:
        mlflow.log_artifact(str(path))
    if tags:
        mlflow.set_tags(dict(tags))
    for name, text in (texts or {}).items():
        mlflow.log_text(text, name)
