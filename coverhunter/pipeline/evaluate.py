"""DVC stage `evaluate` [II-D inference, III-A]: every test set (and val), leave-one-out,
45 s non-overlapping chunks, closest-chunk-pair distance; mAP, MR1, HR1, P10.

Scores the coarse and the fine model side by side (only the coarse one when
`fine.enabled` is false) and, as references, an untrained network of the same
shape, the training-free baselines of `coverhunter.retrieval.baselines` (rows `baseline_2dftm`,
`baseline_chroma`, and `*_tuned` for each further profile of `baselines:`) and, with
`train.init: pretrained`, the shipped checkpoint as it is (row `pretrained`) and the fine
model as trained, before its blend with the checkpoint (row `fine_as_trained`,
`fine.pretrained_share`). Row `fused`
is the final model's distance fused with the 2DFTM's (`fusion:`, coverhunter/retrieval/fusion.py;
with `fusion.fit`, its profile and weight cross-fitted on folds of each set's works; with
`fusion.centre`, rows `baseline_2dftm_centred` and `baseline_2dftm_tuned_centred` are each
profile's 2DFTM alone, centred on the set's mean),
row `reranked` that ranking re-ranked by mutual neighbours (`rerank:`,
coverhunter/retrieval/rerank.py): what `identify` ranks by. Besides val
and the test sets, every row is also scored on
`train_works`: a fixed sample of `evaluate.train_works` training works (drawn with
`train.seed`, all their versions), so over- and under-fitting show. Writes
`reports/metrics.json` ({model: {set: metrics}}), `reports/plots/metrics.png` and
`reports/plots/embeddings.png` (t-SNE of the main test set per trained model, Fig. 3),
logs them and the final model (fine, or coarse without coarse-to-fine) to MLflow. Only
the final model is ever registered or compared with the champion; the reference rows
never are.

Then, unless `run(promote=False)`, the champion/challenger step (`challenge`): the
registry's current champion is downloaded and scored on the *same, current* sets with the
same functions, the final model is registered as `coverhunter`, and the alias `champion`
moves to it only if its `data.main_test_set` mAP is higher than the champion's by at least
`flow.promotion_margin` (`coverhunter.mlops.registry`, which tags both versions with both metric
sets and the reason). A checkpoint whose bytes are already registered (the stage re-run on
the same model) is not logged, registered or compared again: the decision names its
version. The retraining flow (`flows/retrain.py`) runs this stage with `promote=False` and
calls `challenge` as its own task, so a retried evaluation never registers twice and there
is one promotion rule.
"""
from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from coverhunter.digest import file_sha1
from coverhunter.mlops import promotion, registry, tracking
from coverhunter.mlops.pretrain import pretrained_checkpoint
from coverhunter.mlops.promotion import ChampionMeasurement, PromotionDecision, decision_markdown
from coverhunter.model import CoverHunterNet
from coverhunter.model.checkpoint import load_model, resolve_device
from coverhunter.params import Params
from coverhunter.pipeline.layout import (
    AS_TRAINED,
    FEATURES,
    MODELS,
    PARAMS,
    PLOTS,
    REPORTS,
    load,
    validated_manifest,
    write_json,
)
from coverhunter.reporting.plots import plot_embedding_maps, plot_metrics
from coverhunter.reporting.tables import flatten_metrics
from coverhunter.retrieval.embedding_map import recording_vectors, tsne_map
from coverhunter.retrieval.evaluation import EvalSet, evaluate_sets, score_baselines, score_rankings, sets_from_manifest
from coverhunter.training.loop import seed_everything

SECTIONS = ("features", "model", "evaluate", "index", "baselines", "fusion", "rerank", "data")
METRICS_JSON = REPORTS / "metrics.json"
TRAIN_WORKS = "train_works"     # the set name of the sampled training works


def untrained(p: Params, config: dict | None = None) -> CoverHunterNet:
    """The reference network with random weights drawn from ``train.seed``: ``params.yaml``'s
    model, or the architecture of a checkpoint's ``config`` (the same weights when they agree)."""
    seed_everything(p.train.seed)
    if config is None:
        return CoverHunterNet(p.features.n_bins, p.model, n_classes=0).eval()
    return CoverHunterNet.from_config({**config, "n_classes": 0}).eval()


def trained_models(p: Params) -> tuple[str, ...]:
    """The models this pipeline trained, the registered one last: the fine model when
    coarse-to-fine is on [II-D inference uses the fine model], else the coarse one."""
    return ("coarse", "fine") if p.fine.enabled else ("coarse",)


def train_works_rows(df: pd.DataFrame, p: Params) -> pd.DataFrame:
    """The manifest rows of ``evaluate.train_works`` training works (every version), drawn
    without replacement with ``train.seed`` from the sorted work ids (all of them when
    there are fewer), with ``split`` set to ``train_works``. Empty when the key is 0."""
    train = df[df["split"] == p.data.train_split]
    works = sorted(train["work_id"].unique(), key=str)
    n = min(p.evaluate.train_works, len(works))
    picked = [works[i] for i in np.random.default_rng(p.train.seed).choice(len(works), n, replace=False)]
    return train[train["work_id"].isin(picked)].assign(split=TRAIN_WORKS)


def current_sets(p: Params) -> list[EvalSet]:
    """The validation and test sets of the validated manifest, with their features, then
    the ``train_works`` sample of training works (when ``evaluate.train_works`` > 0); the
    main test set must be among them."""
    if TRAIN_WORKS in p.data.splits:
        raise ValueError(f"the split name '{TRAIN_WORKS}' is reserved for evaluate.train_works; "
                         "rename that split in data:")
    df = validated_manifest()
    sets = sets_from_manifest(df, [p.data.val_split, *p.data.test_sets], FEATURES)
    if not any(s.name == p.data.main_test_set for s in sets):
        raise ValueError(f"data.main_test_set '{p.data.main_test_set}' has no recordings in the "
                         f"manifest (sets found: {[s.name for s in sets]}); fix params.yaml")
    sample = train_works_rows(df, p)
    if len(sample):
        sets += sets_from_manifest(sample, [TRAIN_WORKS], FEATURES)
    return sets


def run(params_path: str | Path = PARAMS, promote: bool = True) -> dict:
    """Score, plot and log; with ``promote`` also register the final model (``challenge``)
    and close the pipeline's MLflow parent run. Returns ``metrics`` ({model: {set: ...}}),
    ``model`` (the final model's name), ``model_uri`` (its logged MLflow model) and, with
    ``promote``, ``registered`` (the decision as a dict)."""
    p, raw = load(params_path)
    models = trained_models(p)
    sets = current_sets(p)
    device = resolve_device(p.train.device)
    candidates = {"untrained": untrained(p)}
    if p.train.init == "pretrained":       # the shipped checkpoint as it is, before the demo's training
        candidates["pretrained"] = load_model(pretrained_checkpoint(p.train.pretrained))
    for m in models:
        if (MODELS / m / AS_TRAINED).is_file():     # the fine model before fine.pretrained_share
            candidates[f"{m}_as_trained"] = load_model(MODELS / m / AS_TRAINED)
        candidates[m] = load_model(MODELS / m / "model.pt")
    main = next(s for s in sets if s.name == p.data.main_test_set)
    final = models[-1]
    scored, maps = {}, {}
    for name, net in candidates.items():
        scored[name], chunks = evaluate_sets(net, sets, p, device)
        if name in models:                              # Fig. 3: the trained models' maps
            maps[name] = tsne_map(recording_vectors(chunks[main.name]),
                                  p.evaluate.tsne_perplexity, p.train.seed)
        if name == final:                               # the final model ranked as identify ranks
            scored |= score_rankings(sets, chunks, p)
    # rows: the references (untrained, training-free baselines), then the trained models
    metrics = ({"untrained": scored["untrained"]}
               | score_baselines(sets, p.baselines, p.features.bins_per_octave)
               | {m: scored[m] for m in scored if m != "untrained"})
    write_json(METRICS_JSON, metrics)
    PLOTS.mkdir(parents=True, exist_ok=True)
    png = plot_metrics(metrics, PLOTS / "metrics.png")
    pngs = [png, plot_embedding_maps(maps, main.work_ids, PLOTS / "embeddings.png",
                                     f"t-SNE of the {main.name} set, one point per recording, "
                                     "coloured by work")]

    checkpoint = MODELS / final / "model.pt"
    tracking.configure(Path.cwd())
    key = tracking.pipeline_key(raw)
    known = registry.version_of(file_sha1(checkpoint))   # re-evaluated: logged and registered once
    with tracking.stage_run("evaluate", key, {s: raw[s] for s in SECTIONS},
                            tags={"registered_model": final}):
        tracking.log(flatten_metrics(metrics), [METRICS_JSON, *pngs])
        uri = registry.log_model(checkpoint, p.features.n_bins, p.model.embedding_dim) \
            if known is None else registry.version_uri(known)
    out = {"metrics": metrics, "model": final, "model_uri": uri}
    if promote:
        out["registered"] = dataclasses.asdict(challenge(params_path, uri, metrics[final], sets=sets))
        tracking.end_parent_run(key)   # evaluate is the last stage of a pipeline run
    return out


def measure_champion(p: Params, sets: Sequence[EvalSet], device: str,
                     name: str = registry.DEFAULT_NAME) -> ChampionMeasurement | None:
    """The registry's champion scored on ``sets`` (None when there is no champion). A
    champion that cannot be downloaded or scored (e.g. a checkpoint for other CQT
    settings) is returned with ``value=None`` and the error: it is then kept."""
    version = promotion.champion_version(name)
    if version is None:
        return None
    try:
        with tempfile.TemporaryDirectory(prefix="coverhunter-champion-") as tmp:
            net = load_model(registry.download_checkpoint(registry.version_uri(version, name), tmp))
        metrics, _ = evaluate_sets(net, sets, p, device)
    except Exception as err:   # noqa: BLE001  (recorded as the reason the champion is kept)
        return ChampionMeasurement(version, None, None, f"{type(err).__name__}: {err}")
    return ChampionMeasurement(version, float(metrics[p.data.main_test_set]["mAP"]), metrics)


def challenge(params_path: str | Path, model_uri: str, metrics: dict,
              sets: Sequence[EvalSet] | None = None) -> PromotionDecision:
    """Champion/challenger: measure the current champion on the current sets (``sets``, or
    those of the validated manifest), register ``model_uri`` (whose metrics on the same
    sets are ``metrics``, {set: {metric: value}}) and apply the promotion rule with
    ``flow.promotion_margin``. Logged as the MLflow child run ``promote`` (the champion's
    metrics as ``champion.<set>.<metric>``, the decision as tags and ``decision.md``)."""
    p, raw = load(params_path)
    margin = p.flow.promotion_margin
    tracking.configure(Path.cwd())
    known = registry.registered_version(model_uri)
    if known is not None:       # the same checkpoint evaluated again: nothing new to register
        return promotion.already_registered(known, f"{p.data.main_test_set}.mAP",
                                            metrics[p.data.main_test_set]["mAP"], metrics)
    sets = list(sets) if sets is not None else current_sets(p)
    key = tracking.pipeline_key(raw)
    used = {"data": raw["data"], "flow": {"promotion_margin": margin}}
    with tracking.stage_run("promote", key, used, tags={"model_uri": model_uri}):
        champion = measure_champion(p, sets, resolve_device(p.train.device))
        if champion is not None and champion.metrics:
            tracking.log(flatten_metrics({"champion": champion.metrics}))
        decision = promotion.register_and_promote(
            model_uri, f"{p.data.main_test_set}.mAP", metrics[p.data.main_test_set]["mAP"],
            margin=margin, metrics=metrics, champion=champion)
        tracking.log(tags={"decision": decision.alias, "version": decision.version,
                           "previous_champion": decision.previous_champion_version or "none",
                           "reason": decision.reason},
                     texts={"decision.md": decision_markdown(decision)})
    return decision
