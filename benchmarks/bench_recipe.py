"""Training recipe sweep: the coarse model [II-D] trained under several recipes and seeds
on the pipeline's training works, each scored on a fixed sample of its own training works
(fit), on `val` and on the test sets (generalisation), beside the untrained network.

    python benchmarks/bench_recipe.py --rows ROWS.yaml [--seeds 1234 7 99] [--steps 800]

``ROWS.yaml`` maps a row name to parameter overrides (``section.key: value``) applied to
``params.yaml``, e.g. ``bnneck: {model.neck: bnneck}``. Needs the pipeline's validated
manifest and features (``dvc repro extract``). Prints a table of mean ± sd over seeds and
writes every run's numbers to ``--out`` (CSV; rows already there are not re-run, so a
killed sweep resumes). ``--embeddings`` also scores, for a BNNeck model, the vector
before its BatchNorm (``linear``) and the pre-bottleneck vector (``pre``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coverhunter.digest import json_sha1  # noqa: E402
from coverhunter.features.extract import load_features, read_index  # noqa: E402
from coverhunter.mlops.pretrain import apply_overrides, pretrained_checkpoint  # noqa: E402
from coverhunter.model import CoverHunterNet  # noqa: E402
from coverhunter.model.checkpoint import start_from  # noqa: E402
from coverhunter.params import from_dict  # noqa: E402
from coverhunter.retrieval.evaluation import EvalSet, embed_set, score_set, sets_from_manifest  # noqa: E402
from coverhunter.training.augment import FeatureAugment  # noqa: E402
from coverhunter.training.batches import BatchMaker  # noqa: E402
from coverhunter.training.data import ChunkDataset  # noqa: E402
from coverhunter.training.loop import seed_everything, train  # noqa: E402
from coverhunter.training.losses import CoverHunterLoss  # noqa: E402
from coverhunter.training.sampler import PKSampler  # noqa: E402

FEATURES = ROOT / "artifacts" / "features"     # of --workspace (default: the checkout)
MANIFEST = ROOT / "artifacts" / "validated" / "manifest.parquet"
TRAIN_SAMPLE_WORKS = 24   # training works scored for fit (all their versions)


class _Swap:
    """Score another vector of a BNNeck model: ``linear`` (before its BatchNorm) or ``pre``
    (the pooled vector before the bottleneck)."""

    def __init__(self, net: CoverHunterNet, which: str):
        self.net, self.which, self.saved = net, which, net.bottleneck
        self.classifier = net.classifier

    def __enter__(self):
        self.net.classifier = None                   # logits are not needed to embed
        if self.which == "linear":
            self.net.bottleneck = self.saved.linear
        elif self.which == "pre":
            ident = nn.Identity()
            ident.out_features = self.net.config["model"]["pool_dim"]
            self.net.bottleneck = ident
        return self.net

    def __exit__(self, *exc):
        self.net.bottleneck, self.net.classifier = self.saved, self.classifier


def score(net: CoverHunterNet, sets: list[EvalSet], p, which: str) -> dict:
    net.eval()
    with _Swap(net, which):
        return {s.name: score_set(s, embed_set(net, s, p.evaluate, p.features.frame_rate))
                for s in sets}


def run_row(raw: dict, seed: int, steps: int, sets: list[EvalSet], df: pd.DataFrame,
            embeddings: list[str], work: Path) -> list[dict]:
    raw = apply_overrides(raw, {"train.seed": seed, "train.max_steps": steps, "train.device": "cpu",
                         "train.prefetch_batches": 0})
    p = from_dict(raw)
    index = read_index(FEATURES)
    tr = df[df["split"] == p.data.train_split].sort_values("recording_id")
    works = sorted(tr["work_id"].unique())
    labels = tr["work_id"].map({w: i for i, w in enumerate(works)}).to_numpy()
    feats = load_features(FEATURES, tr["recording_id"].tolist(), index)
    ds = ChunkDataset(feats, labels, p.train.chunk_s, p.train.hop_s, p.features.frame_rate)
    sampler = PKSampler(ds.label, ds.recording, p.train.works_per_batch,
                        p.train.versions_per_work, p.train.seed)
    seed_everything(seed)
    net = CoverHunterNet(p.features.n_bins, p.model, len(works))
    if p.train.init == "pretrained":
        start_from(net, ROOT / pretrained_checkpoint(p.train.pretrained))
    loss = CoverHunterLoss(p.loss, np.bincount(ds.label, minlength=len(works)), p.model.embedding_dim)
    make = (BatchMaker(ds, seed, features=FeatureAugment(p.augment, p.train.pitch_roll_bins))
            if p.train.tricks else BatchMaker(ds, seed))
    t0 = time.perf_counter()
    result = train(net, loss, ds, sampler, p.train, work, progress=False, make=make)  # resumes
    wall = result.history[-1]["elapsed_s"] if result.history else time.perf_counter() - t0
    final_loss = float(np.mean([h["total"] for h in result.history[-20:]]))
    rows = []
    for which in embeddings:
        if which != "bn" and p.model.neck != "bnneck":
            continue
        for name, m in score(net, sets, p, which).items():
            rows.append({"seed": seed, "embedding": which, "set": name, "mAP": m["mAP"],
                         "HR1": m["HR1"], "MR1": m["MR1"], "train_s": wall, "final_loss": final_loss})
    return rows


def eval_sets(p, df: pd.DataFrame, seed: int) -> list[EvalSet]:
    rng = np.random.default_rng(seed)
    tr_works = sorted(df.loc[df["split"] == p.data.train_split, "work_id"].unique())
    pick = set(rng.choice(tr_works, size=min(TRAIN_SAMPLE_WORKS, len(tr_works)), replace=False))
    fit = df[df["work_id"].isin(pick)].assign(split="train_works")
    both = pd.concat([df, fit])
    return sets_from_manifest(both, ["train_works", p.data.val_split, *p.data.test_sets], FEATURES)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", required=True, help="YAML: row name -> {section.key: value}")
    ap.add_argument("--only", nargs="*", help="run only these rows of the file")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1234, 7])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--embeddings", nargs="+", default=["bn"], choices=["bn", "linear", "pre"])
    ap.add_argument("--out", default=str(ROOT / "reports" / "recipe" / "runs.csv"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: robust when other jobs share the cores)")
    ap.add_argument("--workspace", default=str(ROOT),
                    help="project folder whose params.yaml, manifest and features to use "
                         "(e.g. the `make pretrain` workspace for the large catalogue)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global FEATURES, MANIFEST
    ws = Path(args.workspace).resolve()
    FEATURES, MANIFEST = ws / "artifacts" / "features", ws / "artifacts" / "validated" / "manifest.parquet"
    raw = yaml.safe_load((ws / "params.yaml").read_text())
    rows = yaml.safe_load(Path(args.rows).read_text())
    if args.only:
        rows = {k: v for k, v in rows.items() if k in args.only}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = pd.read_csv(out) if out.exists() else pd.DataFrame(columns=["row", "seed", "steps"])
    df = pd.read_parquet(MANIFEST)
    sets = eval_sets(from_dict(raw), df, 0)
    untrained_done = (done["row"] == "untrained").any()
    if not untrained_done:
        p = from_dict(raw)
        seed_everything(raw["train"]["seed"])
        net = CoverHunterNet(p.features.n_bins, p.model, 0)
        recs = [{"row": "untrained", "seed": raw["train"]["seed"], "steps": 0, "embedding": "bn",
                 "set": s, "mAP": m["mAP"], "HR1": m["HR1"], "MR1": m["MR1"]}
                for s, m in score(net, sets, p, "bn").items()]
        done = pd.concat([done, pd.DataFrame(recs)], ignore_index=True)
        done.to_csv(out, index=False)
    for name, changes in rows.items():
        for seed in args.seeds:
            if ((done["row"] == name) & (done["seed"] == seed) & (done["steps"] == args.steps)).any():
                continue
            t0 = time.perf_counter()
            # the work folder is named by every parameter, so a changed row never resumes a stale run
            row_raw = apply_overrides(raw, changes or {})
            key = json_sha1(row_raw, 8)
            work = out.parent / "work" / f"{name}-{seed}-{args.steps}-{key}"
            recs = run_row(row_raw, seed, args.steps, sets, df, args.embeddings, work)
            done = pd.concat([done, pd.DataFrame([{"row": name, "steps": args.steps, **r} for r in recs])],
                             ignore_index=True)
            tmp = out.with_suffix(".tmp")
            done.to_csv(tmp, index=False)
            tmp.replace(out)
            test = [r for r in recs if r["set"] == "test" and r["embedding"] == "bn"]
            print(f"{name} seed {seed}: test mAP {test[0]['mAP']:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    table = (done.groupby(["row", "steps", "embedding", "set"])["mAP"]
             .agg(lambda v: f"{v.mean():.3f} ± {v.std(ddof=0):.3f} (n={len(v)})")
             .unstack("set"))
    print(table.to_markdown())


if __name__ == "__main__":
    main()
