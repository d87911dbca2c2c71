"""Fine-training items [II-D]: aligned pairs cut from their aligned starts, one random
length per pair in [min_s, max_s], P works × K/2 pairs per batch, resumable draws."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coverhunter.training.fine import AlignedChunks, AlignedPairSampler

FPS = 10.0   # frames per second of the toy features


def ramp(n_frames: int, offset: int) -> np.ndarray:
    """Features whose frame t holds the value offset + t in every bin: a cut shows where it began."""
    return np.repeat((offset + np.arange(n_frames, dtype=np.float32))[:, None], 4, axis=1)


@pytest.fixture
def data() -> AlignedChunks:
    feats = {"a1": ramp(100, 0), "a2": ramp(60, 1000), "b1": ramp(80, 2000), "b2": ramp(80, 3000),
             "c1": ramp(80, 4000), "c2": ramp(80, 5000)}
    table = pd.DataFrame({
        "work_id": ["A", "A", "B", "C"], "rec_a": ["a1", "a1", "b1", "c1"],
        "rec_b": ["a2", "a2", "b2", "c2"], "chunk_a": [0, 1, 0, 2], "chunk_b": [2, 3, 0, 2],
        "start_a_s": [0.0, 1.5, 0.0, 3.0], "start_b_s": [3.0, 4.5, 0.0, 3.0],
        "similarity": [0.95] * 4, "delta": [2, 2, 0, 0]})
    return AlignedChunks(table, feats, {"A": 0, "B": 1, "C": 2}, FPS)


def test_a_spec_cuts_from_the_aligned_start(data):
    chunk, label = data[(0, 0, 20)]          # a1 from 0.0 s, 20 frames
    assert label == 0
    np.testing.assert_array_equal(chunk[:, 0], np.arange(20))
    chunk, _ = data[(0, 1, 20)]              # a2 from 3.0 s = frame 30
    np.testing.assert_array_equal(chunk[:, 0], 1000 + np.arange(30, 50))


def test_both_sides_are_cut_short_where_either_recording_ends(data):
    # row 1: a1 from frame 15 (85 left), a2 from frame 45 (15 left): both sides get 15
    for side, first in ((0, 15), (1, 1045)):
        chunk, _ = data[(1, side, 50)]
        assert len(chunk) == 15
        assert chunk[0, 0] == first


def test_sampler_draws_pairs_of_one_length_grouped_by_work(data):
    sampler = AlignedPairSampler(data, p=2, k=4, min_s=2.0, max_s=5.0, frame_rate=FPS, seed=0)
    for _ in range(20):
        specs = sampler.sample()                               # (P·K, 3)
        assert specs.shape == (8, 3)
        rows, sides, lengths = specs.T
        assert (rows[0::2] == rows[1::2]).all()                # the two sides of one pair
        assert (sides[0::2] == 0).all() and (sides[1::2] == 1).all()
        assert (lengths[0::2] == lengths[1::2]).all()          # one length per pair
        assert ((lengths >= 20) & (lengths <= 50)).all()       # 2–5 s at 10 frames/s
        works = data.label[rows].reshape(2, 4)                 # P groups of K chunks
        assert (works == works[:, :1]).all() and works[0, 0] != works[1, 0]


def test_sampler_resumes_the_same_draws(data):
    a = AlignedPairSampler(data, 2, 2, 2.0, 5.0, FPS, seed=3)
    for _ in range(3):
        a.sample()
    state = a.state_dict()
    expected = [a.sample() for _ in range(4)]
    b = AlignedPairSampler(data, 2, 2, 2.0, 5.0, FPS, seed=99)
    b.load_state_dict(state)
    for want in expected:
        np.testing.assert_array_equal(b.sample(), want)


def test_bad_inputs_are_named(data):
    empty = pd.DataFrame(columns=["work_id", "rec_a", "rec_b", "start_a_s", "start_b_s"])
    with pytest.raises(ValueError, match="align.threshold"):
        AlignedChunks(empty, {}, {}, FPS)
    with pytest.raises(ValueError, match="even"):
        AlignedPairSampler(data, 2, 3, 2.0, 5.0, FPS, seed=0)
    table = pd.DataFrame({"work_id": ["A"], "rec_a": ["x"], "rec_b": ["y"],
                          "start_a_s": [0.0], "start_b_s": [0.0]})
    with pytest.raises(ValueError, match="without features"):
        AlignedChunks(table, {"x": ramp(10, 0)}, {"A": 0}, FPS)
