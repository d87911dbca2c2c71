"""The ablation study of Table II [III-D], as DVC experiments and a report.

Each row of the paper's table is one ``dvc exp run -n <row> -S ...`` of the whole pipeline
with the four switches set explicitly (``model.backbone``, ``model.pooling``,
``train.tricks``, ``fine.enabled``) and ``train.init=scratch``, so a row never depends on
what params.yaml happens to hold. ``dvc exp show`` then lists the rows with their metrics, and
:func:`report` reads them back (``dvc exp show --json``) into a Table-II-shaped Markdown
and CSV report (method, mAP, relative difference to the baseline row, MR1, HR1 on
``data.main_test_set``, and mAP on every other test set), logged to MLflow.

The rows run in the workspace one after the other (each re-runs only the stages its
switches reach; DVC's run cache skips the rest). Their MLflow runs and registered models
go to a store of their own (``reports/ablation/mlflow.db``), so an ablation never moves the
``champion`` of the project's registry; params.yaml is restored afterwards.

    python -m coverhunter.mlops.ablation run [--rows a,b] [-S key=value ...]   # run the rows
    python -m coverhunter.mlops.ablation report                                # table only
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

OUT = Path("reports/ablation")
STORE = OUT / "mlflow.db"


@dataclass(frozen=True)
class Row:
    name: str                  # the DVC experiment name
    method: str                # the method, as Table II writes it
    switches: dict[str, Any]   # params set with -S

    def overrides(self) -> list[str]:
        return [f"{k}={json.dumps(v) if isinstance(v, bool) else v}" for k, v in self.switches.items()]


def _row(name: str, method: str, backbone: str, pooling: str, tricks: bool, c2f: bool) -> Row:
    # every row from random weights: the shipped checkpoint is one backbone and pooling only
    return Row(name, method, {"model.backbone": backbone, "model.pooling": pooling,
                              "train.tricks": tricks, "fine.enabled": c2f, "train.init": "scratch"})


# Table II, top to bottom; the first row is the baseline the differences refer to. The
# paper's "Conformer" row uses neither GeM nor attentive pooling: mean pooling here.
ROWS = (
    _row("t2-resnet", "ResNet-IBN 50 (baseline)", "resnet_ibn", "mean", True, False),
    _row("t2-resnet-notricks", "ResNet-IBN 50 w/o training tricks", "resnet_ibn", "mean", False, False),
    _row("t2-conformer", "Conformer", "conformer", "mean", True, False),
    _row("t2-conformer-gem", "Conformer + GeM pooling", "conformer", "gem", True, False),
    _row("t2-conformer-attentive", "Conformer + time-domain (attentive) pooling", "conformer",
         "attentive", True, False),
    # not in the paper's table: what the tricks do for the Conformer itself
    _row("t2-conformer-attentive-notricks", "Conformer + attentive pooling w/o training tricks",
         "conformer", "attentive", False, False),
    _row("t2-conformer-c2f", "Conformer + coarse-to-fine training", "conformer", "mean", True, True),
    _row("t2-full", "CoverHunter (full)", "conformer", "attentive", True, True),
)


def final_model(metrics: dict) -> str:
    """The model a row is judged by: fine when it trained one, else coarse."""
    return "fine" if "fine" in metrics else "coarse"


def experiments(show: list[dict]) -> dict[str, dict]:
    """``dvc exp show --json -A`` → {experiment name: {"params", "metrics", "timestamp",
    "baseline"}}; a name run on several commits keeps its newest run."""
    found: dict[str, dict] = {}
    for baseline in show:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data, name = rev.get("data"), rev.get("name") or exp.get("name")
                if not data or not name:
                    continue
                entry = {
                    "params": data["params"]["params.yaml"]["data"],
                    "metrics": (data.get("metrics") or {}).get("reports/metrics.json", {}).get("data"),
                    "timestamp": data.get("timestamp") or "", "baseline": baseline.get("rev", "")}
                if name not in found or entry["timestamp"] > found[name]["timestamp"]:
                    found[name] = entry
    return found


def table_rows(rows: tuple[Row, ...], found: dict[str, dict], main_set: str) -> list[dict]:
    """One dict per row that has metrics: method, mAP, diff vs the first such row, MR1,
    HR1 on ``main_set``, mAP of the other test sets, the model judged and the experiment."""
    out, base = [], None
    for row in rows:
        exp = found.get(row.name)
        if not exp or not exp["metrics"]:
            continue
        model = final_model(exp["metrics"])
        scores = exp["metrics"][model]
        main = scores[main_set]
        base = base if base is not None else main["mAP"]
        entry = {"method": row.method, "mAP": main["mAP"],
                 "diff": (main["mAP"] - base) / base if base else float("nan"),
                 "MR1": main["MR1"], "HR1": main["HR1"]}
        entry |= {f"mAP {name}": s["mAP"] for name, s in scores.items()
                  if name != main_set and name != exp["params"]["data"]["val_split"]}
        entry |= {"model": model, "experiment": row.name, "commit": exp["baseline"][:7]}
        out.append(entry)
    return out


def markdown(entries: list[dict], main_set: str) -> str:
    if not entries:
        return "(no Table II experiment found: run `python -m coverhunter.mlops.ablation run`)\n"
    keys = list(entries[0])
    head = [f"{k} ({main_set})" if k in ("mAP", "MR1", "HR1") else k for k in keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(keys)]
    for i, e in enumerate(entries):
        cells = []
        for k in keys:
            v = e.get(k, "")
            if k == "diff":
                cells.append("-" if i == 0 else f"{100 * v:+.1f}%")
            elif isinstance(v, float):
                cells.append(f"{v:.3f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _env() -> dict[str, str]:
    """This interpreter's bin folder first on PATH (dvc and the stages' `python -m` come
    from the same environment) and the ablation's own MLflow store."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{STORE.resolve()}"
    env.pop("MLFLOW_REGISTRY_URI", None)
    return env


def run(rows: tuple[Row, ...], extra: list[str]) -> None:
    """``dvc exp run`` each row in the workspace (params.yaml is restored afterwards)."""
    OUT.mkdir(parents=True, exist_ok=True)
    params = Path("params.yaml")
    original = params.read_bytes()
    try:
        for i, row in enumerate(rows, 1):
            print(f"[{i}/{len(rows)}] {row.method}: dvc exp run -n {row.name} "
                  + " ".join(f"-S {o}" for o in [*row.overrides(), *extra]), flush=True)
            cmd = ["dvc", "exp", "run", "--force", "-n", row.name]
            for o in [*row.overrides(), *extra]:
                cmd += ["-S", o]
            env = _env()
            done = subprocess.run(cmd, env=env, executable=shutil.which("dvc", path=env["PATH"]))
            if done.returncode:
                raise SystemExit(f"ablation row {row.name!r} ({row.method}) failed: "
                                 f"dvc exp run exited {done.returncode}; fix it and re-run "
                                 f"with --rows {row.name} (finished rows are kept)")
    finally:
        params.write_bytes(original)


def report(rows: tuple[Row, ...] = ROWS) -> list[dict]:
    """Collect the rows from ``dvc exp show``, write ``reports/ablation/table.{md,csv}``,
    log both to MLflow (the ablation store), print the Markdown."""
    show = subprocess.run(["dvc", "exp", "show", "--json", "--all-commits"], capture_output=True, text=True,
                          check=True, env=_env()).stdout
    main_set = yaml.safe_load(Path("params.yaml").read_text())["data"]["main_test_set"]
    entries = table_rows(rows, experiments(json.loads(show)), main_set)
    OUT.mkdir(parents=True, exist_ok=True)
    md = OUT / "table.md"
    md.write_text(markdown(entries, main_set))
    with (OUT / "table.csv").open("w", newline="") as fh:
        keys = sorted({k for e in entries for k in e}, key=lambda k: list(entries[0]).index(k)
                      if entries and k in entries[0] else 99)
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(entries)
    if entries:
        _log(entries, main_set)
    print(md.read_text())
    return entries


def _log(entries: list[dict], main_set: str) -> None:
    os.environ.update({"MLFLOW_TRACKING_URI": _env()["MLFLOW_TRACKING_URI"]})
    import mlflow  # noqa: PLC0415

    from coverhunter.mlops import tracking  # noqa: PLC0415  (MLflow loads with its switches set)
    tracking.configure(Path.cwd(), experiment="ablation")
    with mlflow.start_run(run_name="table-ii"):
        for e in entries:
            mlflow.log_metric(f"{e['experiment']}.{main_set}.mAP", e["mAP"])
        mlflow.log_artifact(str(OUT / "table.md"))
        mlflow.log_artifact(str(OUT / "table.csv"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["run", "report"])
    ap.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    ap.add_argument("-S", dest="extra", action="append", default=[],
                    help="an extra params override for every row, e.g. -S demo.size=tiny")
    args = ap.parse_args(argv)
    chosen = ROWS
    if args.rows:
        names = args.rows.split(",")
        unknown = sorted(set(names) - {r.name for r in ROWS})
        if unknown:
            sys.exit(f"unknown row(s) {unknown}; rows: {[r.name for r in ROWS]}")
        chosen = tuple(r for r in ROWS if r.name in names)
    if args.action == "run":
        run(chosen, args.extra)
    report()


if __name__ == "__main__":
    main()
