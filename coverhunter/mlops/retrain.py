"""Scheduled retraining's parts outside Prefect: one run per checkout (a file lock), what
is out of date (asked of DVC, so data, params and code changes all count) and the record
of the last successful run. The flow itself is ``flows/retrain.py``."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from filelock import FileLock, Timeout

# the stages a retrain may run, in pipeline order (the demo catalogue is not retrained:
# the catalogue is the manifest in data.manifest)
RETRAIN_STAGES = ("validate", "extract", "train_coarse", "align", "train_fine", "evaluate")
STATE_VERSION = 2


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
def repo_lock(path: str | Path, wait_s: float = 0.0, run_id: str = "none") -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the body (``filelock``: released when the
    process ends, so a killed run never leaves it held). Waits up to ``wait_s`` seconds,
    then raises :class:`LockHeld` naming the holder (pid, host, start, flow run), which
    the holder writes beside the lock (``<path>.holder``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = path.with_name(path.name + ".holder")
    lock = FileLock(path)
    try:
        lock.acquire(timeout=wait_s)
    except Timeout:
        waited = f" (waited {wait_s:g} s)" if wait_s else ""
        raise LockHeld(f"another retrain run holds {path} {_holder(holder)}{waited}; "
                       "exiting without touching anything") from None
    try:
        holder.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                      "flow_run": run_id}))
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def _dvc(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed: {(out.stderr or out.stdout).strip()}")
    return out.stdout


def _why(entries: list) -> str:
    """One line from ``dvc status --json``'s entries of a stage."""
    parts = []
    for entry in entries:
        if isinstance(entry, str):              # e.g. "always changed"
            parts.append(entry)
            continue
        for kind, changed in entry.items():     # "changed deps": {path: state, params.yaml: {key: state}}
            names = []
            for name, state in changed.items():
                if isinstance(state, dict):
                    names += [f"{name}:{key}" for key in state]
                else:
                    names.append(f"{name} ({state})" if state not in ("modified",) else name)
            parts.append(f"{kind}: {', '.join(names)}")
    return "; ".join(parts) or "out of date"


def out_of_date(stages: Sequence[str] = RETRAIN_STAGES) -> dict[str, str]:
    """``{stage: why}`` of the ``stages`` that ``dvc status`` finds out of date against
    dvc.lock (changed data, params or code, or missing outputs), in pipeline order."""
    status = json.loads(_dvc("status", "--json") or "{}")
    return {s: _why(status[s]) for s in stages if s in status}


def record(stage: str) -> None:
    """Write a stage that ran outside ``dvc repro`` into dvc.lock (``dvc commit``), so DVC
    (and the next retrain) knows it is up to date."""
    _dvc("commit", "--force", "--quiet", stage)


def read_state(path: str | Path) -> dict | None:
    """The last successful run's record, or None (absent or from another format)."""
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return state if state.get("version") == STATE_VERSION else None


def write_state(path: str | Path, state: dict) -> None:
    """Atomic replace: a reader sees the old record or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"version": STATE_VERSION, **state}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
