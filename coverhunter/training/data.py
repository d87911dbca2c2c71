"""Training items: fixed-length chunks of each recording's features, labelled by work [II-D].

Features may be in-memory arrays or memory-mapped ``.npy`` files; a chunk is only copied
when it is batched.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from coverhunter.features.chunking import chunk_starts, seconds_to_frames


@dataclass(frozen=True)
class ChunkLocation:
    """A training chunk's place in its recording, in feature frames: what the on-the-fly
    audio tricks need to cut the same stretch from the audio (:mod:`coverhunter.training.batches`)."""
    recording: int | str   # key of the recording (an index or an id, as the dataset names it)
    start: int             # first frame
    frames: int            # frames (cut short where the recording ends)
    label: int             # work class


class ChunkDataset:
    """All chunks of all recordings: item ``i`` is ``(features (T, bins), work label)``."""

    def __init__(self, features: Sequence[np.ndarray], labels: Sequence[int],
                 chunk_s: float, hop_s: float, frame_rate: float):
        if len(features) != len(labels):
            raise ValueError("one work label per recording is required")
        self.features = features
        self.size = seconds_to_frames(chunk_s, frame_rate)
        hop = seconds_to_frames(hop_s, frame_rate)
        rec, start = [], []
        for r, feats in enumerate(features):
            s = chunk_starts(len(feats), self.size, hop)
            rec.append(np.full(len(s), r))
            start.append(s)
        self.recording = np.concatenate(rec)                        # (n_items,)
        self.start = np.concatenate(start)                          # (n_items,)
        self.label = np.asarray(labels)[self.recording]             # (n_items,)

    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        s = self.start[i]
        return np.asarray(self.features[self.recording[i]][s: s + self.size]), int(self.label[i])

    def locate(self, i: int) -> ChunkLocation:
        """Where item ``i`` lies: recording index, first frame, frames, label."""
        s, r = int(self.start[i]), int(self.recording[i])
        return ChunkLocation(r, s, min(self.size, len(self.features[r]) - s), int(self.label[i]))


def pad_batch(chunks: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad chunks ``(T_i, bins)`` to ``(B, max T, bins)``; also returns lengths ``(B,)``."""
    lengths = torch.tensor([len(c) for c in chunks])
    batch = torch.zeros(len(chunks), int(lengths.max()), chunks[0].shape[1])
    for row, c in enumerate(chunks):
        batch[row, : len(c)] = torch.from_numpy(np.ascontiguousarray(c, dtype=np.float32))
    return batch, lengths
