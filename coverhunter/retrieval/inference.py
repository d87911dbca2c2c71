"""Chunk embeddings of whole recordings [II-D inference: 45 s non-overlapping chunks]."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from coverhunter.features.chunking import chunk_features
from coverhunter.model import CoverHunterNet
from coverhunter.model.onnx import OnnxEncoder
from coverhunter.model.runtime import BFloat16Encoder
from coverhunter.progress import bar as progress_bar
from coverhunter.training.data import pad_batch


def embed_chunks(model: CoverHunterNet | OnnxEncoder | BFloat16Encoder, chunks: Sequence[np.ndarray], batch_chunks: int,
                 device: torch.device | str = "cpu", progress: bool = False) -> np.ndarray:
    """Embed chunks ``(T_i, bins)`` of any lengths: ``(n_chunks, embedding_dim)``
    L2-normalised float32. Chunks of similar length share a batch (less padding);
    ``progress`` shows a bar over chunks (rate, ETA)."""
    model = model.eval().to(device)      # an ONNX stand-in hands a GPU over to torch
    out = np.empty((len(chunks), model.embedding_dim), dtype=np.float32)
    order = np.argsort([-len(c) for c in chunks], kind="stable")  # similar lengths together
    with progress_bar(len(chunks), "embed", "chunk", progress) as bar:
        for lo in range(0, len(order), batch_chunks):
            idx = order[lo: lo + batch_chunks]
            x, lengths = pad_batch([chunks[i] for i in idx])      # (b, T, bins), (b,)
            out[idx] = model.embed(x.to(device), lengths.to(device)).cpu().numpy()
            bar.update(len(idx))
    return out


def embed_recordings(model: CoverHunterNet, features: Sequence[np.ndarray], chunk_s: float,
                     hop_s: float, frame_rate: float, batch_chunks: int,
                     device: torch.device | str = "cpu") -> list[np.ndarray]:
    """Embed every chunk of every recording: a list of ``(n_chunks_i, embedding_dim)``
    L2-normalised float32 arrays. Chunks of several recordings share a batch."""
    if len(features) == 0:
        return []
    chunks, counts = [], []
    for feats in features:
        _, cs = chunk_features(feats, chunk_s, hop_s, frame_rate)
        chunks.extend(cs)
        counts.append(len(cs))
    return np.split(embed_chunks(model, chunks, batch_chunks, device), np.cumsum(counts)[:-1])
