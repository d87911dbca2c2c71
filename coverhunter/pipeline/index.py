"""DVC stage `index` [II-D retrieval]: the catalogue's chunk vectors, embedded with the
registered model, in a faiss index (`artifacts/index`), with the `cover` / `no match`
threshold calibrated on the validation works at `index.target_far`; its false-accept and
false-reject rates on each test set (works held out of the catalogue as true negatives)
in `reports/index.json`. The index also holds each recording's 2DFTM vector and the late
fusion fitted on the catalogue (`fusion:`, coverhunter/retrieval/fusion.py; with `fusion.fit`
its weight fitted on the validation works): identify scores,
and the threshold is calibrated, by the fused score (identify then orders its answers by
mutual neighbours, `rerank:`). With `index.centre` the chunk vectors are stored centred on
the catalogue's mean, and every query on the same. `coverhunter index add | remove`
change the catalogue in place."""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from coverhunter.digest import file_sha1
from coverhunter.features.chunking import chunk_features
from coverhunter.features.extract import load_features, read_index
from coverhunter.mlops import registry, tracking
from coverhunter.model.checkpoint import load_model, resolve_device
from coverhunter.model.runtime import for_runtime
from coverhunter.params import BaselineParams, Params
from coverhunter.pipeline.layout import FEATURES, MODELS, REPORTS, load, validated_manifest, write_json
from coverhunter.retrieval.centring import centred_on_mean
from coverhunter.retrieval.fusion import Fusion, fit_catalogue_profiles, fitted_choice, twodftm_vectors
from coverhunter.retrieval.index import ChunkIndex, IndexSpec
from coverhunter.retrieval.inference import embed_recordings
from coverhunter.retrieval.metrics import retrieval_metrics, track_distances
from coverhunter.retrieval.rerank import rerank_square
from coverhunter.retrieval.search import (
    calibrate,
    index_distances,
    index_fusion,
    index_meta,
    open_set_rates,
    open_set_scores,
    recall_at,
)

INDEX = Path("artifacts") / "index"
SUMMARY = REPORTS / "index.json"


def network(model_path: Path, p: Params):
    """The model at ``model_path``, run by ``evaluate.runtime`` (torch or ONNX Runtime)."""
    return for_runtime(load_model(model_path), p.evaluate.runtime)


def final_model(p: Params) -> Path:
    """The registered model: the fine one with coarse-to-fine on, else the coarse one."""
    return MODELS / ("fine" if p.fine.enabled else "coarse") / "model.pt"


def embed_rows(p: Params, rows: pd.DataFrame, model_path: Path, features_dir: Path = FEATURES):
    """Chunk vectors and chunk starts (s) of manifest ``rows``, from their stored features."""
    ids = rows["recording_id"].tolist()
    feats = load_features(features_dir, ids, read_index(features_dir))
    fps, i = p.features.frame_rate, p.index
    vectors = embed_recordings(network(model_path, p), feats, i.chunk_s, i.hop_s, fps,
                               p.evaluate.batch_chunks, resolve_device(p.train.device))
    starts = [chunk_features(f, i.chunk_s, i.hop_s, fps)[0] / fps for f in feats]
    durations = [len(f) / fps for f in feats]
    return vectors, starts, durations


Embedder = Callable[[Params, pd.DataFrame, Path, Path], tuple[list, list, list]]


def twodftm_rows(p: Params, rows: pd.DataFrame, constants: BaselineParams,
                 features_dir: Path = FEATURES) -> np.ndarray:
    """One 2DFTM vector per manifest row ``(n, D)``, from its stored features."""
    ids = rows["recording_id"].tolist()
    return twodftm_vectors(load_features(features_dir, ids, read_index(features_dir)), constants,
                           p.features.bins_per_octave)


def build(p: Params, rows: pd.DataFrame, model_path: Path, meta: dict,
          features_dir: Path = FEATURES, embed: Embedder = embed_rows,
          constants: BaselineParams | None = None, centre: bool | Sequence[float] = False) -> ChunkIndex:
    """The index of manifest ``rows``; ``embed`` computes their vectors (:func:`embed_rows`
    here, or its shards on a cluster: flows/index.py); with ``constants``, also their 2DFTM
    vectors. ``centre``: True stores the vectors centred on their own mean (``index.centre``),
    a vector on that one (recordings added to an index), False as they are."""
    vectors, starts, durations = embed(p, rows, model_path, features_dir)
    if centre is not False:
        vectors, centre = centred_on_mean(vectors, None if centre is True else centre)
        meta = meta | {"centre": list(centre)}
    twodftm = None if constants is None else twodftm_rows(p, rows, constants, features_dir)
    return ChunkIndex.from_recordings(vectors, starts, p.index.chunk_s, rows["recording_id"].tolist(),
                                      rows["work_id"].tolist(), durations,
                                      IndexSpec.from_params(p.index), meta, twodftm)


def query_vectors(index: ChunkIndex, p: Params, rows: pd.DataFrame, model_path: Path) -> list[np.ndarray]:
    """Chunk vectors of manifest ``rows``: the index's own when it holds them all (same model
    and chunking), else embedded."""
    ids = rows["recording_id"].tolist()
    if set(ids) <= set(index.recordings()):
        return index.chunks_of(ids)
    return [index.centred(v) for v in embed_rows(p, rows, model_path)[0]]


def rows_twodftm(index: ChunkIndex, p: Params, rows: pd.DataFrame, constants: BaselineParams,
                 twodftm: np.ndarray | None = None) -> np.ndarray:
    """2DFTM vectors of manifest ``rows`` ``(n, D)``: the index's own (or ``twodftm``, one
    per index recording, in its order) when it holds them all, else made with ``constants``
    from the stored features."""
    ids = rows["recording_id"].tolist()
    if set(ids) <= set(index.recordings()):
        return np.asarray((index.twodftm if twodftm is None else twodftm)[index.numbers_of(ids)])
    return twodftm_rows(p, rows, constants)


def query_twodftm(index: ChunkIndex, p: Params, rows: pd.DataFrame) -> np.ndarray | None:
    """:func:`rows_twodftm` for the index's fusion; None without fusion."""
    fusion = index_fusion(index)
    return None if fusion is None else rows_twodftm(index, p, rows, fusion.constants)


def track_similarities(index: ChunkIndex, q_vectors: list[np.ndarray], q_twodftm: np.ndarray | None,
                       gallery: list[str]) -> np.ndarray:
    """Scores ``(n_q, n_gallery)`` as identify computes them, for every gallery recording:
    the closest chunk pair's similarity, fused with the 2DFTM when the index has fusion."""
    sim = 1.0 - track_distances(q_vectors, index.chunks_of(gallery))
    fusion = index_fusion(index)
    if fusion is None:
        return sim
    return 1.0 - fusion.distances(1.0 - sim, fusion.twodftm_distances(q_twodftm, index.twodftm_of(gallery)))


def catalogue_fusions(index: ChunkIndex, p: Params, rows: pd.DataFrame) -> dict[str, tuple[Fusion, np.ndarray]]:
    """Per 2DFTM profile the index may fuse (``fusion.candidates()``): the catalogue's
    :class:`Fusion` (both means, and the mean 2DFTM vector) and the 2DFTM vectors of the
    index's recordings ``(n, D)`` (manifest ``rows``, in the index's order)."""
    twodftms = {name: (p.baselines[name], twodftm_rows(p, rows, p.baselines[name])) for name in p.fusion.candidates()}
    fusions = fit_catalogue_profiles(index.chunks_of(index.recordings()), twodftms, p.fusion.weight,
                                     p.fusion.fit_recordings, p.train.seed, p.fusion.centre)
    return {name: (fusions[name], twodftm) for name, (_, twodftm) in twodftms.items()}


def fit_fusion(index: ChunkIndex, candidates: dict[str, tuple[Fusion, np.ndarray]], p: Params,
               rows: pd.DataFrame, vectors: list[np.ndarray]) -> tuple[Fusion, np.ndarray]:
    """``fusion.fit``: of ``candidates`` (:func:`catalogue_fusions`), the profile and its
    weight fitted on manifest ``rows`` (the val works; their chunk vectors as the index
    stores them), each recording ranked among them by the catalogue's centring and means
    (:func:`~coverhunter.retrieval.fusion.fitted_choice`): that profile's fusion at that
    weight, and its 2DFTM vectors; the first candidate as it is where they cannot tell."""
    fusions = {}
    for name, (fusion, twodftm) in candidates.items():
        q = rows_twodftm(index, p, rows, fusion.constants, twodftm)
        fusions[name] = fusion, fusion.twodftm_distances(q, q)
    choice = fitted_choice(fusions, track_distances(vectors, vectors), rows["work_id"].tolist(),
                           rows["recording_id"].tolist(), p.fusion, p.rerank)
    if choice is None:
        return next(iter(candidates.values()))
    fusion, twodftm = candidates[choice[0]]
    return dataclasses.replace(fusion, weight=choice[1]), twodftm


def open_set(index: ChunkIndex, queries: pd.DataFrame, q_vectors: list[np.ndarray],
             q_twodftm: np.ndarray | None = None):
    """Per query recording: its best score among other works and among its own."""
    gallery = index.recordings()
    sim = track_similarities(index, q_vectors, q_twodftm, gallery)
    return open_set_scores(sim, queries["work_id"], _works(index, gallery), queries["recording_id"], gallery)


def _works(index: ChunkIndex, recordings: list[str]) -> list[str]:
    return index.tags.groupby("recording_id", sort=False)["work_id"].first().loc[recordings].tolist()


def _metrics(m: dict) -> dict:
    return {k: m[k] for k in ("mAP", "HR1", "MR1", "n_queries")}


def snippets(index: ChunkIndex, p: Params, rows: pd.DataFrame, model_path: Path) -> list[np.ndarray]:
    """Chunk vectors of ``index.snippet_s`` cut from the middle of each recording, as the
    index stores vectors."""
    fps = p.features.frame_rate
    n = round(p.index.snippet_s * fps)
    feats = load_features(FEATURES, rows["recording_id"].tolist(), read_index(FEATURES))
    cut = [f[max(0, (len(f) - n) // 2):][:n] for f in feats]
    return [index.centred(v) for v in embed_recordings(network(model_path, p), cut, p.index.chunk_s, p.index.hop_s,
                                                       fps, p.evaluate.batch_chunks, resolve_device(p.train.device))]


def test_set_report(index: ChunkIndex, p: Params, q: pd.DataFrame, model_path: Path, threshold: float,
                    exact: ChunkIndex) -> dict:
    """One test set: open-set error rates at the threshold; leave-one-out ranking within
    the set through the index and exactly (same vectors); snippets against the whole
    catalogue; recall@10 of the chunk search against exact search."""
    vectors, twodftm = query_vectors(index, p, q, model_path), query_twodftm(index, p, q)
    ids, works = q["recording_id"].tolist(), q["work_id"].tolist()
    out = open_set_rates(*open_set(index, q, vectors, twodftm), threshold)
    # a ranking needs every distance: a flat index fetches all (= exact), another index.k
    d, gallery = index_distances(index, vectors, len(index) if index.kind == "flat" else p.index.k)
    if set(ids) <= set(gallery):
        cols = [gallery.index(r) for r in ids]
        out["through_index"] = _metrics(retrieval_metrics(d[:, cols], works, works, ids, ids))
        out["exact"] = _metrics(retrieval_metrics(track_distances(vectors, vectors), works, works, ids, ids))
        if twodftm is not None:         # as identify ranks: fused, the scales the catalogue's
            fused = 1.0 - track_similarities(index, vectors, twodftm, ids)
            out["fused"] = _metrics(retrieval_metrics(fused, works, works, ids, ids))
            reranked = rerank_square(fused, p.rerank.shortlist, p.rerank.weight)   # identify's order
            out["reranked"] = _metrics(retrieval_metrics(reranked, works, works, ids, ids))
    d, gallery = index_distances(index, snippets(index, p, q, model_path), p.index.k)
    out[f"snippets_{p.index.snippet_s:g}s"] = _metrics(
        retrieval_metrics(d, works, _works(index, gallery), ids, gallery))   # its own recording left out
    out["recall@10"] = recall_at(index, exact, np.concatenate(vectors))
    return out


def run(params_path: str | Path = "params.yaml", progress: bool = True, embed: Embedder = embed_rows) -> dict:
    p, raw = load(params_path)
    df = validated_manifest()
    model_path = final_model(p)
    rows = df[df["split"].isin(p.index.gallery)].sort_values("recording_id")
    if rows.empty:
        raise ValueError(f"index.gallery {p.index.gallery}: no manifest rows in these splits")
    tracking.configure(Path.cwd())
    model_version = registry.version_of(file_sha1(model_path))   # None when it was not registered
    meta = index_meta(model_path, p, model_version) | {"built": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    index = build(p, rows, model_path, meta, embed=embed, centre=p.index.centre)    # its 2DFTM: below
    candidates = catalogue_fusions(index, p, rows)
    val = df[df["split"] == p.data.val_split].sort_values("recording_id")
    val_vectors = query_vectors(index, p, val, model_path)
    fitted = p.fusion.fit and len(val) > 0
    fusion, index.twodftm = fit_fusion(index, candidates, p, val, val_vectors) if fitted \
        else candidates[p.fusion.profile]
    index.meta["fusion"] = fusion.as_dict()
    val_twodftm = rows_twodftm(index, p, val, fusion.constants)

    neg, pos = open_set(index, val, val_vectors, val_twodftm)    # the 2DFTM unused where the index has no fusion
    threshold = calibrate(neg, p.index.target_far)
    index.meta.update(threshold=threshold, target_far=p.index.target_far)
    index.save(INDEX)
    exact = index if index.kind == "flat" else ChunkIndex(index.vectors, index.tags,
                                                          dataclasses.replace(index.spec, kind="flat"), index.meta)
    summary = {"kind": index.kind, "model_version": model_version, "n_vectors": len(index),
               "n_recordings": len(index.recordings()),
               "fusion": fusion.summary() | {"weight_fitted_on": p.data.val_split if fitted else None},
               "threshold": threshold, "target_far": p.index.target_far,
               "val": open_set_rates(neg, pos, threshold)}
    for name in p.data.test_sets:
        q = df[df["split"] == name].sort_values("recording_id")
        if len(q):
            summary[name] = test_set_report(index, p, q, model_path, threshold, exact)
    write_json(SUMMARY, summary)
    used = {s: raw[s] for s in ("index", "features", "data", "fusion")}
    with tracking.stage_run("index", tracking.pipeline_key(raw), used,
                            tags={"model_sha1": meta["model_sha1"], "model_version": str(model_version)}):
        tracking.log({f"{s}.{k}": v for s, m in summary.items() if isinstance(m, dict)
                      for k, v in m.items() if k in ("FAR", "FRR") and v is not None}
                     | {"threshold": threshold}, [SUMMARY])
    return summary


def change(params_path: str | Path, add: str | Path | None = None, remove: list[str] | None = None) -> dict:
    """Add a manifest's recordings to the index (their features extracted and cached like
    the pipeline's) or remove recordings by id, without embedding the catalogue again."""
    from coverhunter.pipeline.score import prepare_manifest

    p, _ = load(params_path)
    index = ChunkIndex.load(INDEX)
    if remove:
        index = index.drop(remove)
    if add:
        rows, _, _, cache = prepare_manifest(add, p, REPORTS / "index_add")
        model_path = final_model(p)
        fusion = index_fusion(index)
        new = build(p, rows.sort_values("recording_id"), model_path, index_meta(model_path, p), cache,
                    constants=None if fusion is None else fusion.constants,
                    centre=False if index.centre is None else index.centre)
        index = index.add(new)          # keeps the index's own meta (threshold, model version)
    index.save(INDEX)
    return {"n_vectors": len(index), "n_recordings": len(index.recordings())}
