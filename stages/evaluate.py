"""DVC stage `evaluate` [II-D inference, III-A]: every test set (and val), leave-one-out,
45 s non-overlapping chunks, closest-chunk-pair distance; mAP, MR1, HR1, P10.

Scores the coarse and the fine model side by side (only the coarse one when
`train.coarse_to_fine` is false) and, as a reference, an untrained network of the same
shape. Writes `reports/metrics.json` ({model: {set: metrics}}), `reports/plots/metrics.png` and
`reports/plots/embeddings.png` (t-SNE of the main test set per trained model, Fig. 3),
logs them to MLflow, registers the final model (fine, or
coarse without coarse-to-fine) as `coverhunter` and gives it the alias `champion` only if
its mAP on `data.main_test_set` beats the current champion's.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import mlflow

from coverhunter import registry, tracking
from coverhunter.embedding_map import recording_vectors, tsne_map
from coverhunter.evaluation import embed_set, score_set, sets_from_manifest
from coverhunter.model import CoverHunterNet
from coverhunter.params import Params
from coverhunter.plots import plot_embedding_maps, plot_metrics
from coverhunter.report import flatten_metrics, metrics_table
from coverhunter.train import load_model, resolve_device, seed_everything

from stages.common import FEATURES, MODELS, PARAMS, PLOTS, REPORTS, load, validated_manifest, write_json

SECTIONS = ("features", "model", "evaluate", "data")
METRICS_JSON = REPORTS / "metrics.json"


def untrained(p: Params) -> CoverHunterNet:
    seed_everything(p.train.seed)
    return CoverHunterNet(p.features.n_bins, p.model, n_classes=0).eval()


def trained_models(p: Params) -> tuple[str, ...]:
    """The models this pipeline trained, the registered one last: the fine model when
    coarse-to-fine is on [II-D inference uses the fine model], else the coarse one."""
    return ("coarse", "fine") if p.train.coarse_to_fine else ("coarse",)


def run(params_path: str | Path = PARAMS) -> dict:
    p, raw = load(params_path)
    models = trained_models(p)
    sets = sets_from_manifest(validated_manifest(), [p.data.val_split, *p.data.test_sets], FEATURES)
    device = resolve_device(p.train.device)
    candidates = {"untrained": untrained(p)} | {m: load_model(MODELS / m / "model.pt") for m in models}
    main = next((s for s in sets if s.name == p.data.main_test_set), None)
    if main is None:
        raise ValueError(f"data.main_test_set '{p.data.main_test_set}' has no recordings in the "
                         f"manifest (sets found: {[s.name for s in sets]}); fix params.yaml")
    metrics, maps = {}, {}
    for name, net in candidates.items():
        chunks = {s.name: embed_set(net, s, p.evaluate, p.features.frame_rate, device) for s in sets}
        metrics[name] = {s.name: score_set(s, chunks[s.name]) for s in sets}
        if name in models:                              # Fig. 3: the trained models' maps
            maps[name] = tsne_map(recording_vectors(chunks[main.name]),
                                  p.evaluate.tsne_perplexity, p.train.seed)
    write_json(METRICS_JSON, metrics)
    PLOTS.mkdir(parents=True, exist_ok=True)
    png = plot_metrics(metrics, PLOTS / "metrics.png")
    pngs = [png, plot_embedding_maps(maps, main.work_ids, PLOTS / "embeddings.png",
                                     f"t-SNE of the {main.name} set, one point per recording, "
                                     "coloured by work")]

    final = models[-1]
    main_map = metrics[final][p.data.main_test_set]["mAP"]
    tracking.configure(Path.cwd())
    key = tracking.pipeline_key(raw)
    with tracking.stage_run("evaluate", key, {s: raw[s] for s in SECTIONS},
                            tags={"registered_model": final}):
        mlflow.log_metrics(flatten_metrics(metrics))
        mlflow.log_artifact(str(METRICS_JSON))
        for figure in pngs:
            mlflow.log_artifact(str(figure))
        uri = registry.log_model(MODELS / final / "model.pt", p.features.n_bins, p.model.embedding_dim)
        decision = registry.register_and_promote(uri, f"{p.data.main_test_set}.mAP", main_map)
    tracking.end_parent_run(key)   # evaluate is the last stage of a pipeline run
    return {"metrics": metrics, "registered": dataclasses.asdict(decision)}


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    out = run()
    print(metrics_table(out["metrics"]))
    print(out["registered"])


if __name__ == "__main__":
    main()
