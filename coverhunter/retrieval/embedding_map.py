"""A 2-D map of recording embeddings, coloured by work [III-C, Fig. 3: t-SNE of the
test-set embeddings without and with coarse-to-fine training].

A recording's point is the mean of its 45 s chunk embeddings, re-normalised (the
retrieval itself uses the closest chunk pair; one point per recording keeps the map
readable). t-SNE with cosine distances places recordings of one work close together when
the model clusters them.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.manifold import TSNE


def recording_vectors(chunks: Sequence[np.ndarray]) -> np.ndarray:
    """Per recording the unit mean of its chunk embeddings ``(n_chunks_i, D)`` → ``(n, D)``."""
    means = np.stack([c.mean(axis=0) for c in chunks])                 # (n, D)
    return means / np.linalg.norm(means, axis=1, keepdims=True).clip(1e-12)


def tsne_map(vectors: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """t-SNE of ``(n, D)`` vectors with cosine distances → ``(n, 2)``; for small sets the
    perplexity is capped at ``(n - 1) / 3`` (t-SNE's neighbourhoods must fit in the set)."""
    n = len(vectors)
    if n < 3:
        raise ValueError(f"a t-SNE map needs at least 3 recordings, got {n}")
    return TSNE(n_components=2, perplexity=min(perplexity, (n - 1) / 3), metric="cosine",
                init="pca", random_state=seed).fit_transform(vectors)
