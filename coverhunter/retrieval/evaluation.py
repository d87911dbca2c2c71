"""Evaluation of a model on test sets [III-A]: 45 s chunk embeddings, closest-chunk-pair
track distance, leave-one-out retrieval within each set (every recording is a query
against all the others of its set)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coverhunter.features.extract import load_features, read_index
from coverhunter.model import CoverHunterNet
from coverhunter.params import EvalParams
from coverhunter.retrieval.inference import embed_recordings
from coverhunter.retrieval.metrics import retrieval_metrics, track_distances


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
    """Chunk embeddings of every recording of a set: per recording ``(n_chunks_i, D)``."""
    return embed_recordings(model, s.features, p.chunk_s, p.hop_s, frame_rate,
                            p.batch_chunks, device)


def score_set(s: EvalSet, chunks: Sequence[np.ndarray]) -> dict[str, float | int]:
    """mAP, MR1, HR1, P10 (and query counts) of one set's chunk embeddings, leave-one-out."""
    d = track_distances(chunks, chunks)
    m = retrieval_metrics(d, s.work_ids, s.work_ids, s.recording_ids, s.recording_ids)
    m["n_recordings"] = len(s.recording_ids)
    m["n_works"] = len(set(s.work_ids))
    return m


def evaluate_set(model: CoverHunterNet, s: EvalSet, p: EvalParams, frame_rate: float,
                 device: str = "cpu") -> dict[str, float | int]:
    """mAP, MR1, HR1, P10 (and query counts) of one set, leave-one-out."""
    return score_set(s, embed_set(model, s, p, frame_rate, device))


def evaluate_sets(model: CoverHunterNet, sets: Sequence[EvalSet], p: EvalParams,
                  frame_rate: float, device: str = "cpu") -> dict[str, dict[str, float | int]]:
    """Metrics per set name."""
    return {s.name: evaluate_set(model, s, p, frame_rate, device) for s in sets}
