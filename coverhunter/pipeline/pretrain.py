"""`make pretrain`: the pipeline on the large catalogue, in its own workspace.

    coverhunter pretrain setup       # write <workspace>/params.yaml and dvc.yaml, link the code
    (cd <workspace> && dvc repro)    # the same DVC stages, on the large catalogue
    coverhunter pretrain export      # the final model -> train.pretrained, with its card

The export keeps the inference part of the final model (no classifier: its classes are
the large catalogue's works) and scores it on the demo's own sets with `coverhunter score`
when the demo catalogue has been built (`dvc repro demo`), beside the baselines.
"""
from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path

import pandas as pd

from coverhunter.mlops.pretrain import init_dvc, prepare_workspace, write_card
from coverhunter.model.checkpoint import load_checkpoint, resolve_device, save_model
from coverhunter.pipeline.layout import load

ROOT = Path.cwd()


def setup(params_path: str | Path = "params.yaml") -> Path:
    """The workspace, a DVC project of its own (no git: it lives in this repository's
    ignored files) whose stages are this project's."""
    _, raw = load(params_path)
    ws = ROOT / raw["pretrain"]["workspace"]
    init_dvc(ws)   # first, so a dvc.yaml never sits there outside a DVC project
    return prepare_workspace(ROOT, raw)


def export(params_path: str | Path = "params.yaml", score_demo: bool = True) -> dict:
    p, raw = load(params_path)
    ws = ROOT / raw["pretrain"]["workspace"]
    wp, wraw = load(ws / "params.yaml")
    final = "fine" if wp.fine.enabled else "coarse"
    state = load_checkpoint(ws / "artifacts" / "models" / final / "model.pt")
    weights = {k: v for k, v in state["model"].items() if not k.startswith("classifier.")}
    config = {**state["config"], "n_classes": 0}
    dest = ROOT / p.train.pretrained
    save_model({"config": config, "model": weights}, dest / "model.pt", pretrained_on="large")

    manifest = pd.read_csv(ws / wp.data.manifest)
    curves = [pd.read_csv(ws / "reports" / "train" / m / "loss.csv")
              for m in (("coarse", "fine") if final == "fine" else ("coarse",))]
    metrics = json.loads((ws / "reports" / "metrics.json").read_text())
    source = {row: "large catalogue (held-out works)" for row in metrics}
    if score_demo and (ROOT / p.data.manifest).exists():
        from coverhunter.pipeline.score import run as score
        demo = score(ROOT / p.data.manifest, str(dest / "model.pt"), ROOT / "reports" / "pretrained",
                     params_path, progress=False)
        demo = {f"{row} (demo sets)": sets for row, sets in demo.items()}
        metrics |= demo
        source |= {row: "demo catalogue" for row in demo}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip() or "unknown"
    card = {
        "name": str(p.train.pretrained), "commit": commit,
        "exported": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "data": {"works": int(manifest["work_id"].nunique()), "recordings": len(manifest),
                 "hours": float(manifest["duration_s"].sum() / 3600),
                 "works_per_split": manifest.groupby("split")["work_id"].nunique().to_dict(),
                 "excluded_splits": list(wraw["demo"]["large"]["exclude_splits"])},
        "steps": int(sum(len(c) for c in curves)),
        "wall_s": float(sum(c["elapsed_s"].max() for c in curves)),   # each curve's elapsed is cumulative
        "final_loss": float(curves[-1]["total"].tail(20).mean()),
        "device": str(resolve_device(wp.train.device)),
        "params": {k: wraw[k] for k in ("model", "loss", "train", "augment")},
        "metrics": metrics, "metrics_source": source,
    }
    write_card(dest, card)
    return card
