"""Chunk embeddings of whole recordings [II-D inference: 45 s non-overlapping chunks]."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from coverhunter.chunking import chunk_features
from coverhunter.data import pad_batch
from coverhunter.model import CoverHunterNet


def embed_recordings(model: CoverHunterNet, features: Sequence[np.ndarray], chunk_s: float,
                     hop_s: float, frame_rate: float, batch_chunks: int,
                     device: torch.device | str = "cpu") -> list[np.ndarray]:
    """Embed every chunk of every recording: a list of ``(n_chunks_i, embedding_dim)``
    L2-normalised float32 arrays. Chunks of several recordings share a batch."""
    model.eval().to(device)
    chunks, counts = [], []
    for feats in features:
        _, cs = chunk_features(feats, chunk_s, hop_s, frame_rate)
        chunks.extend(cs)
        counts.append(len(cs))
    out = np.empty((len(chunks), model.bottleneck.out_features), dtype=np.float32)
    order = np.argsort([-len(c) for c in chunks], kind="stable")  # similar lengths together
    for lo in range(0, len(order), batch_chunks):
        idx = order[lo: lo + batch_chunks]
        x, lengths = pad_batch([chunks[i] for i in idx])
        out[idx] = model.embed(x.to(device), lengths.to(device)).cpu().numpy()
    return np.split(out, np.cumsum(counts)[:-1])
