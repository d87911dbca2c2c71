"""DVC stage `index` [II-D retrieval]: the catalogue's chunk vectors, embedded with the
registered model, in a faiss index (`artifacts/index`), with the `cover` / `no match`
threshold calibrated on the validation works at `index.target_far`; its false-accept and
false-reject rates on each test set (works held out of the catalogue as true negatives)
in `reports/index.json`. `coverhunter index add | remove` change the catalogue in place."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from coverhunter.features.chunking import chunk_features
from coverhunter.features.extract import load_features, read_index
from coverhunter.mlops import tracking
from coverhunter.model.checkpoint import load_model, resolve_device
from coverhunter.params import Params
from coverhunter.pipeline.layout import FEATURES, MODELS, REPORTS, load, validated_manifest, write_json
from coverhunter.retrieval.index import ChunkIndex, IndexSpec
from coverhunter.retrieval.inference import embed_recordings
from coverhunter.retrieval.metrics import track_distances
from coverhunter.retrieval.search import calibrate, index_meta, open_set_rates, open_set_scores

INDEX = Path("artifacts") / "index"
SUMMARY = REPORTS / "index.json"


def final_model(p: Params) -> Path:
    """The registered model: the fine one with coarse-to-fine on, else the coarse one."""
    return MODELS / ("fine" if p.fine.enabled else "coarse") / "model.pt"


def spec(p: Params) -> IndexSpec:
    i = p.index
    return IndexSpec(i.kind, i.nlist, i.nprobe, i.hnsw_m, i.ef_search, i.auto_flat_below)


def embed_rows(p: Params, rows: pd.DataFrame, model_path: Path, features_dir: Path = FEATURES):
    """Chunk vectors and chunk starts (s) of manifest ``rows``, from their stored features."""
    ids = rows["recording_id"].tolist()
    feats = load_features(features_dir, ids, read_index(features_dir))
    fps, i = p.features.frame_rate, p.index
    vectors = embed_recordings(load_model(model_path), feats, i.chunk_s, i.hop_s, fps,
                               p.evaluate.batch_chunks, resolve_device(p.train.device))
    starts = [chunk_features(f, i.chunk_s, i.hop_s, fps)[0] / fps for f in feats]
    durations = [len(f) / fps for f in feats]
    return vectors, starts, durations


def build(p: Params, rows: pd.DataFrame, model_path: Path, meta: dict,
          features_dir: Path = FEATURES) -> ChunkIndex:
    vectors, starts, durations = embed_rows(p, rows, model_path, features_dir)
    return ChunkIndex.from_recordings(vectors, starts, p.index.chunk_s, rows["recording_id"].tolist(),
                                      rows["work_id"].tolist(), durations, spec(p), meta)


def open_set(index: ChunkIndex, p: Params, queries: pd.DataFrame, model_path: Path):
    """Per query recording: its best score among other works and among its own."""
    q_vectors, _, _ = embed_rows(p, queries, model_path)
    gallery = index.recordings()
    g_vectors = [index.vectors[index.rows_of(r)] for r in gallery]
    g_works = index.tags.groupby("recording_id", sort=False)["work_id"].first().loc[gallery]
    sim = 1.0 - track_distances(q_vectors, g_vectors)
    return open_set_scores(sim, queries["work_id"], g_works, queries["recording_id"], gallery)


def run(params_path: str | Path = "params.yaml", progress: bool = True) -> dict:
    p, raw = load(params_path)
    df = validated_manifest()
    model_path = final_model(p)
    rows = df[df["split"].isin(p.index.gallery)].sort_values("recording_id")
    if rows.empty:
        raise ValueError(f"index.gallery {p.index.gallery}: no manifest rows in these splits")
    meta = index_meta(model_path, p) | {"built": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    index = build(p, rows, model_path, meta)

    val = df[df["split"] == p.data.val_split].sort_values("recording_id")
    neg, pos = open_set(index, p, val, model_path)
    threshold = calibrate(neg, p.index.target_far)
    index.meta.update(threshold=threshold, target_far=p.index.target_far)
    index.save(INDEX)
    summary = {"kind": index.kind, "n_vectors": len(index), "n_recordings": len(index.recordings()),
               "threshold": threshold, "target_far": p.index.target_far,
               "val": open_set_rates(neg, pos, threshold)}
    for name in p.data.test_sets:
        q = df[df["split"] == name].sort_values("recording_id")
        if len(q):
            summary[name] = open_set_rates(*open_set(index, p, q, model_path), threshold)
    write_json(SUMMARY, summary)
    used = {s: raw[s] for s in ("index", "features", "data")}
    with tracking.stage_run("index", tracking.pipeline_key(raw), used, tags={"model_sha1": meta["model_sha1"]}):
        tracking.log({f"{s}.{k}": v for s, m in summary.items() if isinstance(m, dict)
                      for k, v in m.items() if k in ("FAR", "FRR")} | {"threshold": threshold},
                     [SUMMARY])
    return summary


def change(params_path: str | Path, add: str | Path | None = None, remove: list[str] | None = None) -> dict:
    """Add a manifest's recordings to the index (their features extracted and cached like
    the pipeline's) or remove recordings by id, without embedding the catalogue again."""
    from coverhunter.pipeline.score import SCORE_FEATURES, prepare_manifest

    p, _ = load(params_path)
    index = ChunkIndex.load(INDEX)
    if remove:
        index = index.drop(remove)
    if add:
        rows, _, _ = prepare_manifest(add, p, REPORTS / "index_add")
        model_path = final_model(p)
        new = build(p, rows.sort_values("recording_id"), model_path,
                    index_meta(model_path, p) | {"built": index.meta.get("built")}, SCORE_FEATURES)
        new.meta.update({k: index.meta[k] for k in ("threshold", "target_far") if k in index.meta})
        index = index.add(new)
    index.save(INDEX)
    return {"n_vectors": len(index), "n_recordings": len(index.recordings())}
