"""Evaluation of a model on test sets [III-A]: 45 s chunk embeddings, closest-chunk-pair
track distance, leave-one-out retrieval within each set (every recording is a query
against all the others of its set)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coverhunter.features.extract import load_features, read_index
from coverhunter.model import CoverHunterNet
from coverhunter.model.runtime import for_runtime
from coverhunter.params import BaselineParams, EvalParams, Params
from coverhunter.retrieval.baselines import BASELINES, baseline_vectors, row_name
from coverhunter.retrieval.centring import centred_on_mean, mean_vector
from coverhunter.retrieval.fusion import Fusion, cross_fitted, fit_square, twodftm_distances, twodftm_vectors
from coverhunter.retrieval.index import ChunkIndex, IndexSpec
from coverhunter.retrieval.inference import embed_recordings
from coverhunter.retrieval.metrics import retrieval_metrics, track_distances
from coverhunter.retrieval.rerank import rerank_square
from coverhunter.retrieval.search import index_distances

FUSED = "fused"          # the final model fused with the 2DFTM (retrieval/fusion.py)
RERANKED = "reranked"    # ... then re-ranked by mutual neighbours (retrieval/rerank.py): what identify ranks by


@dataclass
class EvalSet:
    """One test set: recording ids, their work ids and features ``(frames, bins)``."""
    name: str
    recording_ids: Sequence[str]
    work_ids: Sequence[str]
    features: Sequence[np.ndarray]


def sets_from_manifest(df: pd.DataFrame, names: Sequence[str], features_dir: str | Path) -> list[EvalSet]:
    """One :class:`EvalSet` per split name present in ``df`` (rows sorted by recording id),
    with memory-mapped features from ``features_dir``; absent names are skipped."""
    index = read_index(Path(features_dir))
    sets = []
    for name in names:
        rows = df[df["split"] == name].sort_values("recording_id")
        if len(rows):
            ids = rows["recording_id"].tolist()
            sets.append(EvalSet(name, ids, rows["work_id"].tolist(),
                                load_features(features_dir, ids, index)))
    if not sets:
        raise ValueError(f"the manifest has no rows in {list(names)}: nothing to evaluate")
    return sets


def embed_set(model: CoverHunterNet, s: EvalSet, p: EvalParams, frame_rate: float,
              device: str = "cpu") -> list[np.ndarray]:
    """Chunk embeddings of every recording of a set: per recording ``(n_chunks_i, D)``,
    with the network run by ``p.runtime``."""
    return embed_recordings(for_runtime(model, p.runtime), s.features, p.chunk_s, p.hop_s, frame_rate,
                            p.batch_chunks, device)


def set_distances(chunks: Sequence[np.ndarray], through: IndexSpec | None = None, k: int = 0) -> np.ndarray:
    """Leave-one-out track distances within a set: every chunk pair (``through`` None), or
    through a faiss index of that spec fetching ``k`` chunks per query chunk (a flat index
    fetches them all, so its distances are the exact ones)."""
    if through is None:
        return track_distances(chunks, chunks)
    ids = [str(i) for i in range(len(chunks))]
    index = ChunkIndex.from_recordings(chunks, [np.zeros(len(c)) for c in chunks], 1.0, ids, ids,
                                       [1.0] * len(ids), through, {})
    d, gallery = index_distances(index, list(chunks), len(index) if index.kind == "flat" else k)
    return d[:, np.argsort([int(g) for g in gallery])]


def set_metrics(s: EvalSet, d: np.ndarray) -> dict[str, float | int]:
    """mAP, MR1, HR1, P10 (and query counts) of one set's leave-one-out distances ``(n, n)``."""
    m = retrieval_metrics(d, s.work_ids, s.work_ids, s.recording_ids, s.recording_ids)
    m["n_recordings"] = len(s.recording_ids)
    m["n_works"] = len(set(s.work_ids))
    return m


def score_set(s: EvalSet, chunks: Sequence[np.ndarray], through: IndexSpec | None = None,
              k: int = 0) -> dict[str, float | int]:
    """mAP, MR1, HR1, P10 (and query counts) of one set's chunk embeddings, leave-one-out."""
    return set_metrics(s, set_distances(chunks, through, k))


def score_ranking(s: EvalSet, chunks: Sequence[np.ndarray], p: Params) -> dict[str, dict[str, float | int]]:
    """The rows of how ``identify`` ranks, on one set: ``fused``, the model's leave-one-out
    distances (``evaluate.search``; with ``index.centre`` of chunk vectors centred on the
    set's mean) fused with the 2DFTM's (``fusion:``, both means, and with ``fusion.centre``
    the mean 2DFTM vector, measured on the set itself, which is its own catalogue here), and
    ``reranked``, those re-ranked by mutual neighbours (``rerank:``). With ``fusion.fit`` the
    2DFTM's profile and weight are cross-fitted on folds of the set's works, and the
    ``fused`` row also records the folds' weights (least, mean, largest) and how many folds
    chose each profile (``folds_<profile>``). With ``fusion.centre`` also each profile's
    centred 2DFTM alone, the training-free part of the fused score (``baseline_2dftm_centred``,
    ``baseline_2dftm_tuned_centred``)."""
    d_model = set_distances(centred_on_mean(chunks)[0] if p.index.centre else chunks, *search_of(p))
    fusions = set_fusions(s, d_model, p)
    if p.fusion.fit:
        fused, reranked, choices = cross_fitted(fusions, d_model, s.work_ids, s.recording_ids,
                                                p.fusion, p.rerank, p.train.seed)
        weights = [w for _, w in choices]
        fitted = {"weight_min": min(weights), "weight_mean": float(np.mean(weights)), "weight_max": max(weights)} \
            | {f"folds_{name}": sum(c == name for c, _ in choices) for name in fusions}
    else:
        fusion, d_baseline = fusions[p.fusion.profile]
        fused = fusion.distances(d_model, d_baseline)
        reranked, fitted = rerank_square(fused, p.rerank.shortlist, p.rerank.weight), {}
    rows = {FUSED: set_metrics(s, fused) | fitted, RERANKED: set_metrics(s, reranked)}
    if p.fusion.centre:
        rows |= {centred_row(name): set_metrics(s, d) for name, (_, d) in fusions.items()}
    return rows


def set_fusions(s: EvalSet, d_model: np.ndarray, p: Params) -> dict[str, tuple[Fusion, np.ndarray]]:
    """Per 2DFTM profile a fusion may use (``fusion.candidates()``): its :class:`Fusion` with
    both means (and the mean 2DFTM vector) measured on the set, and its leave-one-out 2DFTM
    distances ``(n, n)`` as the fusion compares them."""
    out = {}
    for name in p.fusion.candidates():
        constants = p.baselines[name]
        vectors = twodftm_vectors(s.features, constants, p.features.bins_per_octave)
        centre = mean_vector(vectors) if p.fusion.centre else None
        d_baseline = twodftm_distances(vectors, vectors, centre)
        out[name] = fit_square(d_model, d_baseline, p.fusion.weight, constants, centre, name), d_baseline
    return out


def centred_row(profile: str) -> str:
    """The row of a profile's 2DFTM centred on the set: ``baseline_2dftm_centred`` (classic)."""
    return row_name("2dftm", profile) + "_centred"


def score_rankings(sets: Sequence[EvalSet], chunks: Mapping[str, Sequence[np.ndarray]],
                   p: Params) -> dict[str, dict[str, dict[str, float | int]]]:
    """``{row: {set: metrics}}`` of :func:`score_ranking` on every set (``chunks`` by set name)."""
    per_set = {s.name: score_ranking(s, chunks[s.name], p) for s in sets}
    return {row: {name: rows[row] for name, rows in per_set.items()} for row in next(iter(per_set.values()), {})}


def search_of(p: Params) -> tuple[IndexSpec | None, int]:
    """``evaluate.search``: every chunk pair (None), or the ``index:`` spec and its ``k``."""
    return (None, 0) if p.evaluate.search == "exact" else (IndexSpec.from_params(p.index), p.index.k)


def evaluate_set(model: CoverHunterNet, s: EvalSet, p: Params, device: str = "cpu") -> dict[str, float | int]:
    """mAP, MR1, HR1, P10 (and query counts) of one set, leave-one-out (``evaluate.search``)."""
    return score_set(s, embed_set(model, s, p.evaluate, p.features.frame_rate, device), *search_of(p))


def evaluate_sets(model: CoverHunterNet, sets: Sequence[EvalSet], p: Params,
                  device: str = "cpu") -> tuple[dict[str, dict[str, float | int]], dict[str, list[np.ndarray]]]:
    """``({set: metrics}, {set: chunk embeddings})`` of one model on every set."""
    chunks = {s.name: embed_set(model, s, p.evaluate, p.features.frame_rate, device) for s in sets}
    return {s.name: score_set(s, chunks[s.name], *search_of(p)) for s in sets}, chunks


def score_baselines(sets: Sequence[EvalSet], profiles: Mapping[str, BaselineParams],
                    bins_per_octave: int = 12) -> dict[str, dict[str, dict[str, float | int]]]:
    """``{row: {set: metrics}}`` of every baseline under every profile on every set, scored
    with the models' metric function (leave-one-out within each set)."""
    return {row_name(name, profile): {s.name: score_set(s, baseline_vectors(name, s.features, p,
                                                                              bins_per_octave))
                                      for s in sets}
            for profile, p in profiles.items() for name in BASELINES}
