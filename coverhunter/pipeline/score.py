"""Score a trained or registered model on any manifest, without retraining.

    coverhunter score --manifest other/manifest.csv [--model champion | PATH | models:/...]

The manifest is validated with the same suite as the pipeline's (bad rows are named and
stop the run). Features are extracted into a cache of that manifest's own
(`artifacts/score_features/<hash of its path>/`), so scoring one manifest never removes
another's features. Every split
other than `data.train_split` is scored as a test set, leave-one-out, with the pipeline's
inference settings, beside the reference rows: `untrained` (the model's architecture with
random weights, as `evaluate` draws them), the training-free ones of
`coverhunter.retrieval.baselines` (`baseline_2dftm`, `baseline_chroma`, from the same features)
`fused`, the scored model with the 2DFTM (`fusion:`, coverhunter/retrieval/fusion.py), and
`reranked`, that ranking re-ranked by mutual neighbours (`rerank:`, coverhunter/retrieval/rerank.py),
as `identify` ranks. Writes
`<out>/metrics.json`, `<out>/validation.{json,md}` and a plot, and logs them to MLflow as a
`score` run.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from coverhunter.catalogue.manifest import read_manifest
from coverhunter.catalogue.validation import raise_for_failures, validate_manifest
from coverhunter.features.extract import extract_catalogue
from coverhunter.mlops import registry, tracking
from coverhunter.model.checkpoint import load_model, resolve_device
from coverhunter.params import Params
from coverhunter.pipeline.evaluate import untrained
from coverhunter.pipeline.layout import ARTIFACTS, PARAMS, REPORTS, fingerprint, load, write_json
from coverhunter.reporting.plots import plot_metrics
from coverhunter.reporting.tables import flatten_metrics
from coverhunter.retrieval.evaluation import evaluate_sets, score_baselines, score_rankings, sets_from_manifest

SCORE_FEATURES = ARTIFACTS / "score_features"


def features_cache(manifest: str | Path) -> Path:
    """The feature cache of one manifest: its recordings and no others."""
    return SCORE_FEATURES / fingerprint(str(Path(manifest).resolve()))


def resolve_model(model: str, workdir: Path):
    """A checkpoint path, ``champion`` (the registry's champion) or any ``models:/`` URI."""
    if Path(model).is_file():
        return load_model(model)
    uri = f"models:/{registry.DEFAULT_NAME}@champion" if model == "champion" else model
    if not uri.startswith("models:/"):
        raise FileNotFoundError(f"--model {model}: not a file, 'champion' or a models:/ URI")
    return load_model(registry.download_checkpoint(uri, workdir))


def row_name(model: str) -> str:
    """The metrics row of ``--model``: ``champion``; a checkpoint ``.../NAME/model.pt`` is
    ``NAME`` (any other file its stem); a ``models:/`` URI with ``/`` and ``:`` as ``-``
    (MLflow metric names may not contain a path)."""
    path = Path(model)
    if model != "champion" and path.is_file():
        return path.parent.name if path.name == "model.pt" and path.parent.name else path.stem
    return model.replace("models:/", "").replace("/", "-").replace(":", "-").replace("@", "-")


def prepare_manifest(manifest: str | Path, p: Params, report_dir: Path,
                     progress: bool = True) -> tuple[pd.DataFrame, list[str], Path, Path]:
    """Validate another manifest (bad rows stop with their line and fix) and extract its
    features into its cache (:func:`features_cache`); returns the validated rows, its
    splits other than ``data.train_split``, the validation report and the cache."""
    splits = sorted(set(read_manifest(manifest)["split"].dropna()) - {p.data.train_split})
    result = validate_manifest(manifest, [p.data.train_split, *splits], p.data.train_split, splits,
                               min_duration_s=p.evaluate.min_duration_s, report_dir=report_dir,
                               duration_key="evaluate.min_duration_s",
                               min_rms_dbfs=p.data.min_rms_dbfs, progress=progress)
    raise_for_failures(result)
    df = result.manifest
    cache = features_cache(manifest)
    extract_catalogue(df["recording_id"].tolist(), df["audio_file"].tolist(), cache,
                      p.features, resolve_device(p.train.device), progress)
    return df, splits, result.report_md, cache


def run(manifest: str | Path, model: str = "champion", out: str | Path = REPORTS / "score",
        params_path: str | Path = PARAMS, progress: bool = True) -> dict:
    p, raw = load(params_path)
    out = Path(out)
    device = resolve_device(p.train.device)
    tracking.configure(Path.cwd())
    with tempfile.TemporaryDirectory() as tmp:    # first: a bad --model fails before any work
        net = resolve_model(model, Path(tmp))
    df, splits, report_md, cache = prepare_manifest(manifest, p, out, progress)
    sets = sets_from_manifest(df, splits, cache)
    scored, chunks = evaluate_sets(net, sets, p, device)
    metrics = {row_name(model): scored,
               "untrained": evaluate_sets(untrained(p, net.config), sets, p, device)[0]}
    metrics |= score_rankings(sets, chunks, p)
    metrics |= score_baselines(sets, p.baselines, p.features.bins_per_octave)
    write_json(out / "metrics.json", metrics)
    png = plot_metrics(metrics, out / "metrics.png")
    key = f"score-{fingerprint(str(Path(manifest).resolve()), model)}"
    sections = ("features", "evaluate", "index", "baselines", "fusion", "rerank")
    with tracking.stage_run("score", key, {s: raw[s] for s in sections},
                            tags={"manifest": str(Path(manifest).resolve()), "model": model}):
        tracking.log(flatten_metrics(metrics), [out / "metrics.json", png, report_md])
    tracking.end_parent_run(key)
    return metrics
