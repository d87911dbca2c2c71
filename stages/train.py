"""DVC stage `train_coarse` [II-D coarse training]: 15 s chunks with a 7.5 s hop, labelled
by work, on the training split.

Resumable: checkpoints go to a scratch folder named by a fingerprint of everything that
shapes the run (parameters, training recordings and their features), so a killed run
resumes on the next `dvc repro`, and a changed parameter starts afresh. The stage's output
is the final model only (`artifacts/models/coarse/model.pt`), the loss history
(`reports/train/coarse_loss.csv`) and its plot.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from coverhunter import tracking
from coverhunter.data import ChunkDataset
from coverhunter.extract import load_features, read_index
from coverhunter.losses import CoverHunterLoss
from coverhunter.model import CoverHunterNet
from coverhunter.plots import plot_loss
from coverhunter.sampler import PKSampler
from coverhunter.train import load_checkpoint, save_model, seed_everything, train

from stages.common import (FEATURES, MODELS, PARAMS, PLOTS, REPORTS, WORK, fingerprint, load,
                           validated_manifest)

SECTIONS = ("features", "model", "loss", "train")   # what this stage reads from params.yaml


def run(params_path: str | Path = PARAMS, name: str = "coarse", progress: bool = True) -> dict:
    p, raw = load(params_path)
    df = validated_manifest()
    df = df[df["split"] == p.data.train_split].sort_values("recording_id")
    works = sorted(df["work_id"].unique())
    label_of = {w: i for i, w in enumerate(works)}
    index = read_index(FEATURES)
    feats = load_features(FEATURES, df["recording_id"].tolist(), index)
    labels = df["work_id"].map(label_of).to_numpy()
    shas = index.set_index("recording_id").loc[df["recording_id"], "audio_sha1"].tolist()

    used = {s: raw[s] for s in SECTIONS}
    key = fingerprint(used, list(zip(df["recording_id"], df["work_id"], shas)))
    work_dir = WORK / f"{name}-{key}"
    seed_everything(p.train.seed)
    model = CoverHunterNet(p.features.n_bins, p.model, len(works))
    ds = ChunkDataset(feats, labels, p.train.chunk_s, p.train.hop_s, p.features.frame_rate)
    loss = CoverHunterLoss(p.loss, np.bincount(ds.label, minlength=len(works)), p.model.embedding_dim)
    sampler = PKSampler(ds.label, ds.recording, p.train.works_per_batch,
                        p.train.versions_per_work, p.train.seed)

    tracking.configure(Path.cwd())
    with tracking.stage_run(f"train_{name}", tracking.pipeline_key(raw), used,
                            tags={"model": name, "work_dir": str(work_dir)}):
        result = train(model, loss, ds, sampler, p.train, work_dir,
                       callback=tracking.step_logger(p.train.log_every), progress=progress)
        history = pd.DataFrame(result.history)
        history.insert(0, "step", np.arange(1, len(history) + 1))
        csv = REPORTS / "train" / f"{name}_loss.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        history.to_csv(csv, index=False)
        PLOTS.mkdir(parents=True, exist_ok=True)
        png = plot_loss(result.history, PLOTS / f"{name}_loss.png", f"{name} model: training loss")
        out = save_model(load_checkpoint(result.checkpoint), MODELS / name / "model.pt",
                         works=works, fingerprint=key)
        mlflow.log_artifact(str(csv))
        mlflow.log_artifact(str(png))
        summary = {"model": str(out), "steps": result.steps, "works": len(works),
                   "recordings": len(df), "chunks": len(ds),
                   "final_loss": float(history["total"].tail(20).mean())}
        mlflow.log_metrics({"train_chunks": len(ds), "final_loss": summary["final_loss"]})
    return summary


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    print(run())


if __name__ == "__main__":
    main()
