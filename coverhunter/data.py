"""Training items: fixed-length chunks of each recording's features, labelled by work [II-D].

Features may be in-memory arrays or memory-mapped ``.npy`` files; a chunk is only copied
when it is batched.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from coverhunter.chunking import chunk_starts, seconds_to_frames


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


def pad_batch(chunks: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad chunks ``(T_i, bins)`` to ``(B, max T, bins)``; also returns lengths ``(B,)``."""
    lengths = torch.tensor([len(c) for c in chunks])
    batch = torch.zeros(len(chunks), int(lengths.max()), chunks[0].shape[1])
    for row, c in enumerate(chunks):
        batch[row, : len(c)] = torch.from_numpy(np.ascontiguousarray(c, dtype=np.float32))
    return batch, lengths


def collate(items: Sequence[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[(chunk, label)]`` → features ``(B, T, bins)``, lengths ``(B,)``, labels ``(B,)``."""
    x, lengths = pad_batch([c for c, _ in items])
    return x, lengths, torch.tensor([label for _, label in items])
