"""Evaluation of a model on test sets [III-A]: 45 s chunk embeddings, closest-chunk-pair
track distance, leave-one-out retrieval within each set (every recording is a query
against all the others of its set)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from coverhunter.inference import embed_recordings
from coverhunter.metrics import retrieval_metrics, track_distances
from coverhunter.model import CoverHunterNet
from coverhunter.params import EvalParams


@dataclass
class EvalSet:
    """One test set: recording ids, their work ids and features ``(frames, bins)``."""
    name: str
    recording_ids: Sequence[str]
    work_ids: Sequence[str]
    features: Sequence[np.ndarray]


def evaluate_set(model: CoverHunterNet, s: EvalSet, p: EvalParams, frame_rate: float,
                 device: str = "cpu") -> dict[str, float | int]:
    """mAP, MR1, HR1, P10 (and query counts) of one set, leave-one-out."""
    chunks = embed_recordings(model, s.features, p.chunk_s, p.hop_s, frame_rate,
                              p.batch_chunks, device)
    d = track_distances(chunks, chunks)
    m = retrieval_metrics(d, s.work_ids, s.work_ids, s.recording_ids, s.recording_ids)
    m["n_recordings"] = len(s.recording_ids)
    m["n_works"] = len(set(s.work_ids))
    return m


def evaluate_sets(model: CoverHunterNet, sets: Sequence[EvalSet], p: EvalParams,
                  frame_rate: float, device: str = "cpu") -> dict[str, dict[str, float | int]]:
    """Metrics per set name."""
    return {s.name: evaluate_set(model, s, p, frame_rate, device) for s in sets}
