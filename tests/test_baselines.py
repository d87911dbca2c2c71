"""Training-free baselines (coverhunter/retrieval/baselines.py), the train_works sample of the evaluate
stage, and the plot with the reference rows."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from coverhunter.params import BaselineParams, EvalParams
from coverhunter.retrieval import baselines as B
from coverhunter.retrieval.evaluation import EvalSet, score_baselines
from coverhunter.retrieval.metrics import track_distances

FLOOR = -80.0
HARMONICS = ((0, 0.0), (12, -6.0), (19, -10.0), (24, -14.0), (28, -18.0))  # (bins above f0, dB)


def melody_cqt(pitches, note_frames: int, transpose: int = 0, start: int = 0, repeats: int = 4,
               noise_db: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """A CQT-like dB array ``(frames, 96)`` of a tune: each note is the bin of its
    fundamental (plus ``transpose``) and four harmonics, on a -80 dB floor; the tune is
    repeated and started ``start`` frames in (a time shift)."""
    seq = np.roll(np.tile(np.repeat(pitches, note_frames), repeats), -start) + transpose
    x = np.full((len(seq), 96), FLOOR, np.float32)
    for off, db in HARMONICS:
        x[np.arange(len(seq)), seq + off] = np.maximum(x[np.arange(len(seq)), seq + off], db)
    if noise_db:
        x = np.clip(x + noise_db * rng.standard_normal(x.shape), FLOOR, 0.0)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def bp(params) -> BaselineParams:
    return params.baselines["tuned"]


def test_single_bin_folds_into_its_pitch_class():
    for b in (0, 5, 13, 47, 95):
        x = np.full((3, 96), FLOOR, np.float32)
        x[:, b] = 0.0
        c = B.fold_chroma(x)
        assert c.shape == (3, 12)
        assert int(c[0].argmax()) == b % 12
        # 0 dB -> 1.0 plus 7 floor bins of 1e-4 in its class; 8 floor bins elsewhere
        expected = np.full(12, 8e-4)
        expected[b % 12] = 1.0 + 7e-4
        np.testing.assert_allclose(c[1], expected, rtol=1e-5)


def test_block_average_hand_computed():
    x = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    np.testing.assert_allclose(B.block_average(x, 2), [[1.5], [3.5], [5.0]])
    np.testing.assert_allclose(B.block_average(x, 1), x)


def test_patches_hop_and_tiling():
    x = np.arange(10)[:, None]
    p = B.patches(x, 4, 3)
    assert p[:, :, 0].tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    short = B.patches(np.arange(3)[:, None], 7, 2)          # shorter than a patch: tiled
    assert short[:, :, 0].tolist() == [[0, 1, 2, 0, 1, 2, 0]]


def test_2dftm_of_one_constant_pitch_class_is_flat_over_the_pitch_frequencies(bp):
    """One class always on: |FFT2| is the patch length at every pitch frequency of the
    zero time frequency and 0 elsewhere, so the normalised vector is 1/sqrt(12) on those
    12 entries, whichever class it is."""
    p = dataclasses.replace(bp, patch_frames=5, patch_hop=1, power=0.5)
    for k in (0, 7):
        chroma = np.zeros((9, 12), np.float32)
        chroma[:, k] = 1.0
        v = B.fft2_magnitude(chroma, p).reshape(5, 12)
        np.testing.assert_allclose(v[0], np.full(12, 12 ** -0.5), atol=1e-6)
        np.testing.assert_allclose(v[1:], 0.0, atol=1e-6)


def test_2dftm_is_exactly_invariant_to_a_pitch_class_rotation(bp):
    rng = np.random.default_rng(0)
    chroma = rng.random((40, 12)).astype(np.float32)
    ref = B.fft2_magnitude(chroma, bp)
    for k in (1, 5, 11):
        np.testing.assert_allclose(B.fft2_magnitude(np.roll(chroma, k, axis=1), bp), ref, atol=1e-6)
    other = B.fft2_magnitude(rng.random((40, 12)).astype(np.float32), bp)
    assert np.abs(other - ref).max() > 1e-3                  # it does tell chroma apart


def test_transposed_recording_has_the_same_vectors(bp):
    """A CQT shifted by k bins (a key change) gives the same 2DFTM and a mean chroma whose
    best rotation matches it exactly (distance 0)."""
    rng = np.random.default_rng(1)
    tune = rng.integers(24, 48, 16)
    x = melody_cqt(tune, 10)
    for k in (-5, 3, 6):
        y = melody_cqt(tune, 10, transpose=k)
        np.testing.assert_allclose(B.twodftm(y, bp), B.twodftm(x, bp), atol=1e-5)
        d = track_distances([B.key_invariant_chroma(x, bp)], [B.key_invariant_chroma(y, bp)])
        assert d[0, 0] == pytest.approx(0.0, abs=1e-5)
        # without the rotations the centred mean chromas differ
        plain = track_distances([B.key_invariant_chroma(x, bp)[:1]], [B.key_invariant_chroma(y, bp)[:1]])
        assert plain[0, 0] > 0.1


def test_versions_of_a_work_are_nearer_than_any_other_work(params):
    """Four random tunes, three versions each (transposed, started elsewhere, noisy): under
    both baselines and both profiles every recording's nearest neighbours are its own
    work's versions."""
    rng = np.random.default_rng(2023)
    tunes = [rng.integers(24, 48, 16) for _ in range(4)]
    feats, works, ids = [], [], []
    for w, tune in enumerate(tunes):
        keys = [0, *rng.integers(-5, 7, 2).tolist()]           # the original key, two others
        for v, (k, start) in enumerate(zip(keys, (0, 37, 85))):
            feats.append(melody_cqt(tune, 10, transpose=k, start=start, noise_db=1.0, rng=rng))
            works.append(f"w{w}")
            ids.append(f"w{w}-v{v}")
    rows = score_baselines([EvalSet("synthetic", ids, works, feats)], params.baselines)
    assert set(rows) == {"baseline_2dftm", "baseline_chroma", "baseline_2dftm_tuned",
                         "baseline_chroma_tuned"}
    for name, sets in rows.items():
        m = sets["synthetic"]
        assert (m["mAP"], m["HR1"], m["n_queries"]) == (pytest.approx(1.0), 1.0, 12), name


def test_baseline_vectors_shapes_and_unknown_name(bp):
    x = melody_cqt(np.arange(24, 40), 10)
    assert B.baseline_vectors("2dftm", [x], bp)[0].shape == (1, bp.patch_frames * 12)
    assert B.baseline_vectors("chroma", [x], bp)[0].shape == (12, 12)
    with pytest.raises(ValueError, match="unknown baseline"):
        B.baseline_vectors("nope", [x], bp)


def test_baseline_and_train_works_params_are_checked(bp, params):
    with pytest.raises(ValueError, match="baselines.block_frames"):
        dataclasses.replace(bp, block_frames=0)
    with pytest.raises(ValueError, match="baselines.power"):
        dataclasses.replace(bp, power=0.0)
    with pytest.raises(ValueError, match="evaluate.train_works"):
        dataclasses.replace(params.evaluate, train_works=-1)
    from coverhunter.params import profiles
    with pytest.raises(ValueError, match="missing key baselines.classic.power"):
        profiles(BaselineParams, {"classic": {k: v for k, v in vars(bp).items() if k != "power"}},
                 "baselines")
    assert isinstance(params.evaluate, EvalParams) and params.evaluate.train_works >= 0


def test_train_works_sample_is_seeded_and_keeps_every_version(params):
    from coverhunter.pipeline.evaluate import TRAIN_WORKS, train_works_rows
    df = pd.DataFrame({"recording_id": [f"r{w}-{v}" for w in range(10) for v in range(3)] + ["t1", "t2"],
                       "work_id": [f"w{w}" for w in range(10) for _ in range(3)] + ["x", "x"],
                       "split": ["train"] * 30 + ["test", "test"]})

    def sample(n, seed=params.train.seed):
        p = dataclasses.replace(params, evaluate=dataclasses.replace(params.evaluate, train_works=n),
                                train=dataclasses.replace(params.train, seed=seed))
        return train_works_rows(df, p)

    four = sample(4)
    assert four["work_id"].nunique() == 4 and len(four) == 12      # all 3 versions of 4 works
    assert (four["split"] == TRAIN_WORKS).all() and four["work_id"].str.startswith("w").all()
    assert four.equals(sample(4))                                   # same seed, same sample
    assert any(set(sample(4, seed)["work_id"]) != set(four["work_id"]) for seed in range(5))
    assert len(sample(0)) == 0
    assert sample(100)["work_id"].nunique() == 10                    # capped at what exists


def test_metrics_plot_copes_with_five_rows_and_a_missing_set(tmp_path):
    from coverhunter.reporting.plots import plot_metrics
    one = {"mAP": 0.5, "HR1": 0.4, "P10": 0.2}
    rows = {r: {"val": one, "test": one, "train_works": one}
            for r in ("untrained", "baseline_2dftm", "baseline_chroma", "coarse")}
    rows["fine"] = {"test": one}
    out = plot_metrics(rows, tmp_path / "m.png")
    assert out.stat().st_size > 0
