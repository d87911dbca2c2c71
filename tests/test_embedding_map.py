"""Fig. 3 maps: one unit vector per recording, t-SNE that keeps works together."""
from __future__ import annotations

import numpy as np
import pytest

from coverhunter.reporting.plots import plot_embedding_maps
from coverhunter.retrieval.embedding_map import recording_vectors, tsne_map


def test_recording_vector_is_the_unit_mean_of_its_chunks():
    v = recording_vectors([np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 3.0]])])
    np.testing.assert_allclose(v, [[2 ** -0.5, 2 ** -0.5], [0.0, 1.0]])


def clustered(n_works: int = 4, per_work: int = 6, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_works, dim))
    work = np.repeat(np.arange(n_works), per_work)
    points = centres[work] + 0.05 * rng.normal(size=(len(work), dim))  # (n, dim)
    return recording_vectors([p[None] for p in points]), work          # one chunk each


def test_tsne_keeps_each_recordings_nearest_neighbour_in_its_work():
    vectors, work = clustered()
    xy = tsne_map(vectors, perplexity=30.0, seed=0)                 # capped at (24 - 1) / 3
    assert xy.shape == (24, 2)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert (work[d.argmin(axis=1)] == work).all()
    np.testing.assert_array_equal(tsne_map(vectors, 30.0, seed=0), xy)   # seeded


def test_tsne_refuses_too_few_recordings():
    with pytest.raises(ValueError, match="at least 3"):
        tsne_map(np.eye(2), 30.0, 0)


def test_maps_are_drawn_side_by_side(tmp_path):
    _, work = clustered(n_works=25, per_work=2)                    # more works than colours
    xy = np.random.default_rng(0).normal(size=(50, 2))
    png = plot_embedding_maps({"coarse": xy, "fine": xy}, [f"w{w}" for w in work],
                              tmp_path / "maps.png", "t-SNE")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
