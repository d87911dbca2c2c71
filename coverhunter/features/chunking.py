"""Fixed-length chunks of a feature sequence, by seconds and hop [II-D].

Coarse training uses 15 s chunks with a 7.5 s hop; inference uses 45 s non-overlapping
chunks. One rule serves both: chunks start every ``hop`` frames while a full chunk fits,
and if frames remain after the last full chunk, one more full chunk is placed flush with
the end, so every frame is covered. A sequence shorter than one chunk is one short chunk.
"""
from __future__ import annotations

import numpy as np


def seconds_to_frames(seconds: float, frame_rate: float) -> int:
    """Whole frames in ``seconds`` (45 s → 1125 frames at 25 frames/s)."""
    return max(1, round(seconds * frame_rate))


def chunk_starts(n_frames: int, chunk_frames: int, hop_frames: int) -> np.ndarray:
    """Start frames of the chunks covering ``n_frames`` frames, shape ``(n_chunks,)``."""
    if n_frames <= 0:
        raise ValueError(f"cannot chunk an empty sequence (n_frames={n_frames})")
    if chunk_frames <= 0 or hop_frames <= 0:
        raise ValueError(f"chunk and hop must be positive, got {chunk_frames}, {hop_frames}")
    if n_frames <= chunk_frames:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_frames - chunk_frames + 1, hop_frames, dtype=np.int64)
    if starts[-1] + chunk_frames < n_frames:
        starts = np.append(starts, n_frames - chunk_frames)
    return starts


def chunk_features(features: np.ndarray, chunk_s: float, hop_s: float,
                   frame_rate: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """Cut ``features`` ``(frames, bins)`` into chunks.

    Returns the start frames ``(n_chunks,)`` and the chunks, each ``(chunk_frames, bins)``
    (or the whole sequence when it is shorter than one chunk).
    """
    size = seconds_to_frames(chunk_s, frame_rate)
    starts = chunk_starts(len(features), size, seconds_to_frames(hop_s, frame_rate))
    return starts, [features[s: s + size] for s in starts]
