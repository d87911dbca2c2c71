"""Chunk alignment of coarse-to-fine training [II-D]: known answers."""
import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from coverhunter.align import alignment as align
from coverhunter.align.alignment import (
    ALIGNMENT_COLUMNS,
    SUMMARY_COLUMNS,
    align_catalogue,
    align_pairs,
    align_work,
    embed_grid_chunks,
    grid_starts,
    mode_offsets,
)
from coverhunter.features.chunking import chunk_starts, seconds_to_frames
from coverhunter.model import CoverHunterNet

FPS = 25.0


# --- the offset mode ------------------------------------------------------------------

def test_paper_worked_example():
    # Section II-D: matches (p1, p2, δ), 1-based chunk positions as printed in the paper
    matches = [(1, 1, 0), (1, 2, 1), (1, 3, 2), (2, 4, 2), (2, 5, 3),
               (3, 4, 1), (4, 2, -2), (4, 6, 2), (5, 4, -1), (5, 5, 0)]
    p1, p2, _ = np.array(matches).T
    delta, pairs = align_pairs(p1, p2, np.full(len(matches), 0.95), threshold=0.9)
    assert delta == 2
    assert [tuple(p) for p in pairs] == [(1, 3), (2, 4), (4, 6)]


def test_only_pairs_above_the_threshold_are_matches():
    # δ = 0 has more pairs, but only the δ = 1 pairs exceed the threshold
    p1, p2 = np.array([0, 1, 2, 0, 1]), np.array([0, 1, 2, 1, 2])
    sim = np.array([0.9, 0.9, 0.9, 0.95, 0.91])         # 0.9 is not above 0.9
    delta, pairs = align_pairs(p1, p2, sim, threshold=0.9)
    assert delta == 1 and pairs.tolist() == [[0, 1], [1, 2]]
    delta, pairs = align_pairs(p1, p2, sim, threshold=0.96)
    assert delta is None and pairs.shape == (0, 2)


@pytest.mark.parametrize("deltas, sims, expected", [
    ([1, 1, 2], [0.91, 0.91, 0.99], 1),                 # most matches wins over similarity
    ([1, 1, 3, 3], [0.91, 0.92, 0.95, 0.96], 3),        # count tie: higher summed similarity
    ([3, 3, -2, -2], [0.95, 0.95, 0.95, 0.95], -2),     # similarity tie: smallest |δ|
    ([-3, -3, 2, 2], [0.95, 0.95, 0.95, 0.95], 2),      # ... even when it is not the smaller δ
    ([2, 2, -2, -2], [0.95, 0.95, 0.95, 0.95], -2),     # |δ| tie: the smaller δ
    ([-2, -2, 2, 2], [0.95, 0.95, 0.95, 0.95], -2),     # ... whatever the input order
])
def test_tie_rule(deltas, sims, expected):
    mode, found = mode_offsets(np.zeros(len(deltas)), np.array(deltas), np.array(sims), 1)
    assert found[0] and mode[0] == expected


def test_mode_per_pair_in_one_call():
    pair = np.array([0, 0, 0, 2, 2, 2])
    delta = np.array([5, 5, -1, 0, 4, 4])
    mode, found = mode_offsets(pair, delta, np.full(6, 0.95), 3)
    assert found.tolist() == [True, False, True]
    assert mode[0] == 5 and mode[2] == 4


# --- chunk grid -----------------------------------------------------------------------

def test_grid_starts_drop_the_off_grid_tail():
    assert chunk_starts(100, 30, 15).tolist() == [0, 15, 30, 45, 60, 70]
    assert grid_starts(100, 30, 15).tolist() == [0, 15, 30, 45, 60]
    assert grid_starts(90, 30, 15).tolist() == [0, 15, 30, 45, 60]   # exact fit: no tail anyway
    assert grid_starts(20, 30, 15).tolist() == [0]                   # short: one chunk at 0
    with pytest.raises(ValueError, match="empty"):
        grid_starts(0, 30, 15)


# --- a version with a 20 s intro ------------------------------------------------------

def smooth_noise(rng: np.random.Generator, seconds: float, bins: int, sigma_s: float) -> np.ndarray:
    """A slowly varying feature-like sequence (frames, bins): white noise under a Gaussian
    kernel of ``sigma_s`` seconds, so two chunks are similar only when they nearly overlap."""
    pad = int(4 * sigma_s * FPS)
    x = rng.normal(size=(round(seconds * FPS) + 2 * pad, bins))
    kernel = np.exp(-0.5 * (np.arange(-pad, pad + 1) / (sigma_s * FPS)) ** 2)
    return np.stack([np.convolve(x[:, b], kernel, mode="valid") for b in range(bins)], axis=1)


def embed_by_hand(features: np.ndarray, chunk_s: float,
                  hop_s: float) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, shift-sensitive chunk "embedding": each grid chunk's 1 s means, flattened."""
    size, hop = seconds_to_frames(chunk_s, FPS), seconds_to_frames(hop_s, FPS)
    starts = grid_starts(len(features), size, hop)
    per_second = round(FPS)
    emb = np.stack([features[s: s + size].reshape(-1, per_second, features.shape[1]).mean(1).ravel()
                    for s in starts])
    return emb, starts / FPS


def test_version_with_a_20_s_intro_is_aligned_at_the_nearest_grid_offset():
    chunk_s, hop_s, intro_s = 15.0, 7.5, 20.0          # paper chunks; hop = 188 frames = 7.52 s
    rng = np.random.default_rng(1)
    song = smooth_noise(rng, 120.0, 24, sigma_s=6.0)
    intro = smooth_noise(rng, intro_s, 24, sigma_s=6.0)  # unrelated material
    version_a, version_b = song, np.concatenate([intro, song])
    (emb_a, start_a), (emb_b, start_b) = embed_by_hand(version_a, chunk_s, hop_s), \
        embed_by_hand(version_b, chunk_s, hop_s)

    table, summary = align_work("w", ["a", "b"], [emb_a, emb_b], [start_a, start_b], threshold=0.9)

    hop_true = seconds_to_frames(hop_s, FPS) / FPS
    grid_offsets = np.arange(len(emb_b)) * hop_true
    nearest = int(np.argmin(np.abs(grid_offsets - intro_s)))
    assert nearest == 3                                  # 22.56 s (15.04 s and 30.08 s are further)
    assert summary["delta"].tolist() == [nearest]
    assert (table["chunk_b"] - table["chunk_a"] == nearest).all()
    np.testing.assert_allclose(table["start_b_s"] - table["start_a_s"], nearest * hop_true)
    # most of a's chunks find their partner in b (a has 14 chunks, all with one 3 hops on)
    assert len(table) >= 12 and summary["aligned"].item() == len(table)


# --- a whole work ---------------------------------------------------------------------

def three_recordings():
    eye = np.eye(8, dtype=np.float32)
    x = eye[[0, 1, 2, 3]]                                # 4 chunks
    y = eye[[4, 0, 1, 2]]                                # x one hop later, after a new chunk
    z = np.stack([0.8 * eye[0] + 0.6 * eye[7], eye[5], eye[6]])  # nothing above 0.9
    embeddings = [x, y, z]
    starts = [np.arange(len(e)) * 7.5 for e in embeddings]
    return embeddings, starts


def test_align_work_tables():
    embeddings, starts = three_recordings()
    table, summary = align_work(7, ["x", "y", "z"], embeddings, starts, threshold=0.9)

    assert list(table.columns) == ALIGNMENT_COLUMNS
    assert table.dtypes.to_dict() == {
        "work_id": object, "rec_a": object, "rec_b": object, "chunk_a": np.int64,
        "chunk_b": np.int64, "start_a_s": np.float64, "start_b_s": np.float64,
        "similarity": np.float32, "delta": np.int64}
    assert table[["rec_a", "rec_b", "chunk_a", "chunk_b", "delta"]].values.tolist() == [
        ["x", "y", 0, 1, 1], ["x", "y", 1, 2, 1], ["x", "y", 2, 3, 1]]
    assert (table["work_id"] == 7).all()
    np.testing.assert_allclose(table["similarity"], 1.0, rtol=1e-6)
    np.testing.assert_array_equal(table["start_a_s"], table["chunk_a"] * 7.5)
    np.testing.assert_array_equal(table["start_b_s"], table["chunk_b"] * 7.5)

    assert list(summary.columns) == SUMMARY_COLUMNS
    assert str(summary["delta"].dtype) == "Int64"
    assert summary[["rec_a", "rec_b"]].values.tolist() == [["x", "y"], ["x", "z"], ["y", "z"]]
    assert summary["n_chunks_a"].tolist() == [4, 4, 4]
    assert summary["n_chunks_b"].tolist() == [4, 3, 3]
    assert summary["matches"].tolist() == [3, 0, 0]
    assert summary["aligned"].tolist() == [3, 0, 0]
    assert summary["delta"].iloc[0] == 1 and summary["delta"].iloc[1:].isna().all()
    assert summary["reason"].iloc[0] == ""
    for reason in summary["reason"].iloc[1:]:
        assert reason == "no chunk pair above threshold 0.9 (best similarity 0.8000)"


def test_min_votes_leaves_pairs_whose_offset_few_matches_hold_unaligned():
    """At threshold 0.79: x-y match at δ = 1 three times, x-z and y-z once each
    (z's first chunk against x's and y's chunk of eye[0]). With min_votes 2 only x-y keeps
    its Δ; its three aligned pairs are those of the paper's rule."""
    embeddings, starts = three_recordings()
    table1, summary1 = align_work("w", ["x", "y", "z"], embeddings, starts, threshold=0.79)
    assert summary1["aligned"].tolist() == [3, 1, 1]
    table, summary = align_work("w", ["x", "y", "z"], embeddings, starts, threshold=0.79,
                                min_votes=2)
    assert summary["matches"].tolist() == [3, 1, 1]
    assert summary["aligned"].tolist() == [3, 0, 0]
    assert summary["delta"].iloc[0] == 1 and summary["delta"].iloc[1:].isna().all()
    assert summary["reason"].iloc[1] == "no offset held by align.min_votes = 2 of its 1 matches"
    assert table.values.tolist() == table1[table1["rec_b"] == "y"].values.tolist()
    assert align_work("w", ["x", "y", "z"], embeddings, starts, 0.79, min_votes=4)[0].empty
    # the paper's worked example: Δ = 2 holds 3 matches
    p1, p2 = np.array([1, 1, 1, 2, 2, 3, 4, 4, 5, 5]), np.array([1, 2, 3, 4, 5, 4, 2, 6, 4, 5])
    assert align_pairs(p1, p2, np.full(10, 0.95), 0.9, min_votes=3)[0] == 2
    delta, pairs = align_pairs(p1, p2, np.full(10, 0.95), 0.9, min_votes=4)
    assert delta is None and pairs.shape == (0, 2)


def test_a_similarity_equal_to_the_threshold_is_not_a_match():
    embeddings, starts = three_recordings()   # z's first chunk · x's first chunk = 0.8 exactly
    _, summary = align_work("w", ["x", "y", "z"], embeddings, starts, threshold=0.8)
    assert summary["matches"].tolist() == [3, 0, 0]
    _, summary = align_work("w", ["x", "y", "z"], embeddings, starts, threshold=0.79)
    assert summary["matches"].tolist() == [3, 1, 1]


def test_align_work_single_recording_and_bad_input():
    table, summary = align_work("w", ["x"], [np.eye(3)], [np.arange(3) * 7.5], threshold=0.9)
    assert len(table) == 0 and len(summary) == 0
    assert list(table.columns) == ALIGNMENT_COLUMNS and list(summary.columns) == SUMMARY_COLUMNS
    with pytest.raises(ValueError, match="one start per chunk"):
        align_work("w", ["x", "y"], [np.eye(3), np.eye(3)], [np.arange(3), np.arange(2)], 0.9)
    with pytest.raises(ValueError, match="unique"):
        align_work("w", ["x", "x"], [np.eye(3), np.eye(3)], [np.arange(3)] * 2, 0.9)


def test_align_catalogue_concatenates_works():
    embeddings, starts = three_recordings()
    works = {"w1": (["x", "y", "z"], embeddings, starts),
             "w2": (["p", "q"], embeddings[:2], starts[:2]),
             "w3": (["solo"], embeddings[:1], starts[:1])}
    table, summary = align_catalogue(works, threshold=0.9, progress=False)
    assert table["work_id"].tolist() == ["w1"] * 3 + ["w2"] * 3
    assert summary["work_id"].tolist() == ["w1"] * 3 + ["w2"]
    assert str(summary["delta"].dtype) == "Int64" and table["similarity"].dtype == np.float32
    lazy = ((w, works[w]) for w in works)      # a generator of (work_id, chunks) also works
    table2, summary2 = align_catalogue(lazy, threshold=0.9, progress=False)
    pd.testing.assert_frame_equal(table, table2)
    pd.testing.assert_frame_equal(summary, summary2)


# --- vectorised == naive --------------------------------------------------------------

def naive_alignment(embeddings, threshold):
    """Loops over recording pairs and chunk pairs; the tie rule as a sort key."""
    unit = [e / np.linalg.norm(e, axis=1, keepdims=True) for e in embeddings]
    result = {}
    for a, b in itertools.combinations(range(len(unit)), 2):
        matches = []
        for i in range(len(unit[a])):
            for j in range(len(unit[b])):
                s = np.float32(np.dot(unit[a][i], unit[b][j]))
                if s > np.float32(threshold):
                    matches.append((i, j, s))
        if not matches:
            result[a, b] = (None, set())
            continue
        stats = {}
        for i, j, s in matches:
            n, total = stats.get(j - i, (0, 0.0))
            stats[j - i] = (n + 1, total + float(s))
        delta = min(stats, key=lambda d: (-stats[d][0], -stats[d][1], abs(d), d))
        result[a, b] = (delta, {(i, j) for i, j, _ in matches if j - i == delta})
    return result


@pytest.mark.parametrize("block", [align.BLOCK_ELEMENTS, 7, 1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_equals_naive(monkeypatch, block, seed):
    monkeypatch.setattr(align, "BLOCK_ELEMENTS", block)  # row blocks of a few rows, or one
    rng = np.random.default_rng(seed)
    n_rec = int(rng.integers(2, 6))
    # 3-D vectors: many chunk pairs above 0.8, with ties in count between offsets
    embeddings = [rng.normal(size=(int(rng.integers(1, 9)), 3)).astype(np.float32)
                  for _ in range(n_rec)]
    starts = [np.arange(len(e)) * 7.5 for e in embeddings]
    ids = [f"r{i}" for i in range(n_rec)]
    table, summary = align_work("w", ids, embeddings, starts, threshold=0.8)
    expected = naive_alignment(embeddings, 0.8)
    assert len(summary) == len(expected) == n_rec * (n_rec - 1) // 2
    for row in summary.itertuples():
        a, b = ids.index(row.rec_a), ids.index(row.rec_b)
        delta, pairs = expected[a, b]
        got = table[(table.rec_a == row.rec_a) & (table.rec_b == row.rec_b)]
        assert (None if pd.isna(row.delta) else row.delta) == delta
        assert set(zip(got.chunk_a, got.chunk_b)) == pairs
        assert row.aligned == len(pairs)
    assert sum(len(p) for _, p in expected.values()) > 0   # the data do exercise matches


# --- embedding with a model -----------------------------------------------------------

def test_embed_grid_chunks_matches_model_embed(tiny):
    torch.manual_seed(0)
    model = CoverHunterNet(tiny.features.n_bins, tiny.model, 0).eval()
    chunk_s, hop_s = tiny.train.chunk_s, tiny.train.hop_s          # 6 s / 3 s: 150 / 75 frames
    rng = np.random.default_rng(0)
    features = [rng.normal(size=(500, 96)).astype(np.float32),     # 20 s: grid 0..300, tail 350
                rng.normal(size=(100, 96)).astype(np.float16)]     # 4 s: one short chunk
    emb, starts = embed_grid_chunks(model, features, chunk_s, hop_s, FPS, batch_chunks=4)
    assert [s.tolist() for s in starts] == [[0.0, 3.0, 6.0, 9.0, 12.0], [0.0]]
    assert [e.shape for e in emb] == [(5, 16), (1, 16)]
    for feats, e, st in zip(features, emb, starts):
        for k, s in enumerate(st):
            begin = round(s * FPS)
            chunk = torch.from_numpy(feats[begin: begin + 150].astype(np.float32))[None]
            torch.testing.assert_close(torch.from_numpy(e[k]), model.embed(chunk)[0],
                                       atol=1e-5, rtol=1e-5)
    assert embed_grid_chunks(model, [], chunk_s, hop_s, FPS, 4) == ([], [])
