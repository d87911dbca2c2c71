"""Late fusion of the model's and the 2DFTM's track distances (coverhunter/retrieval/fusion.py),
in evaluation and in the index's ranking, with hand-computed answers."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from test_baselines import melody_cqt
from test_index import CHUNK, META, D, catalogue, spec, unit

from coverhunter.retrieval.centring import centred_on_mean
from coverhunter.retrieval.evaluation import EvalSet, score_baselines, score_ranking, score_set
from coverhunter.retrieval.fusion import (
    Fusion,
    best_choice,
    best_weight,
    cross_fitted,
    fit_catalogue,
    fit_square,
    fitted_choice,
    profile_aps,
    twodftm_distances,
    twodftm_vectors,
    weight_aps,
    weight_grid,
)
from coverhunter.retrieval.index import ChunkIndex
from coverhunter.retrieval.metrics import track_distances
from coverhunter.retrieval.search import index_fusion, rank

D_MODEL = np.array([[0.0, 0.4, 0.6], [0.4, 0.0, 0.8], [0.6, 0.8, 0.0]])      # off-diagonal mean 0.6
D_2DFTM = np.array([[0.0, 0.1, 0.2], [0.1, 0.0, 0.3], [0.2, 0.3, 0.0]])      # off-diagonal mean 0.2


def test_fused_distances_by_hand(params):
    """Means 0.6 and 0.2 over the distinct pairs, so the 2DFTM counts 3×; with w = 0.5,
    d(0, 1) = 0.5·0.4 + 0.5·3·0.1 = 0.35, d(0, 2) = 0.3 + 0.3 = 0.6, d(1, 2) = 0.4 + 0.45 = 0.85.
    A recording and its copy stay at 0."""
    fusion = fit_square(D_MODEL, D_2DFTM, 0.5, params.baselines["classic"])
    assert (fusion.model_mean, fusion.twodftm_mean) == (pytest.approx(0.6), pytest.approx(0.2))
    fused = fusion.distances(D_MODEL, D_2DFTM)
    np.testing.assert_allclose(fused, [[0, 0.35, 0.6], [0.35, 0, 0.85], [0.6, 0.85, 0]], atol=1e-12)
    # the model puts recording 0 nearer to 1 than 2 is; so does the fusion, by less
    assert fused[0, 1] - fused[1, 2] == pytest.approx(-0.5)
    at_zero = dataclasses.replace(fusion, weight=0.0).distances(D_MODEL, D_2DFTM)
    assert at_zero is D_MODEL or np.array_equal(at_zero, D_MODEL)          # bit for bit
    at_one = dataclasses.replace(fusion, weight=1.0).distances(D_MODEL, D_2DFTM)
    np.testing.assert_allclose(at_one, 3 * D_2DFTM)


def test_fusion_survives_json_and_a_2dftm_that_tells_nothing_leaves_the_model_alone(params):
    """A 2DFTM with every pair at 0, or a set of one recording (no pair to measure), adds
    nothing: the fused distances are the model's, scaled by 1 - w (the same ranking)."""
    bp = params.baselines["classic"]
    fusion = fit_square(D_MODEL, D_2DFTM, 0.3, bp)
    assert Fusion.from_dict(json.loads(json.dumps(fusion.as_dict()))) == fusion
    flat = fit_square(D_MODEL, np.zeros((3, 3)), 0.3, bp)
    np.testing.assert_allclose(flat.distances(D_MODEL, np.zeros((3, 3))), 0.7 * D_MODEL)
    lone = fit_square(np.zeros((1, 1)), np.zeros((1, 1)), 0.3, bp)
    assert (lone.model_mean, lone.twodftm_mean) == (0.0, 0.0)
    assert lone.distances(np.array([[0.2]]), np.array([[0.5]]))[0, 0] == pytest.approx(0.14)


def test_catalogue_fit_measures_every_pair_or_a_seeded_sample(params):
    vecs, *_ = catalogue(n_rec=9, n_chunks=3, seed=6)
    twodftm = unit(np.random.default_rng(7).normal(size=(9, 5)))
    bp = params.baselines["classic"]
    whole = fit_catalogue(vecs, twodftm, 0.3, bp, max_recordings=9, seed=0)
    by_hand = fit_square(track_distances(vecs, vecs), 1.0 - twodftm @ twodftm.T, 0.3, bp)
    assert whole.model_mean == pytest.approx(by_hand.model_mean)
    assert whole.twodftm_mean == pytest.approx(by_hand.twodftm_mean)
    sample = fit_catalogue(vecs, twodftm, 0.3, bp, max_recordings=4, seed=0)
    assert sample == fit_catalogue(vecs, twodftm, 0.3, bp, max_recordings=4, seed=0)   # seeded
    assert sample.model_mean != pytest.approx(whole.model_mean)


@pytest.fixture(scope="module")
def tunes_set():
    """Three tunes, three versions each (transposed, started elsewhere, noisy)."""
    rng = np.random.default_rng(11)
    feats, works, ids = [], [], []
    for w in range(3):
        tune = rng.integers(24, 48, 16)
        for v, (key, start) in enumerate(((0, 0), (3, 41), (-2, 77))):
            feats.append(melody_cqt(tune, 10, transpose=key, start=start, noise_db=1.0, rng=rng))
            works.append(f"w{w}")
            ids.append(f"w{w}-v{v}")
    return EvalSet("synthetic", ids, works, feats)


def test_the_fused_row_is_the_model_at_weight_0_and_the_2dftm_at_weight_1(params, tunes_set):
    """Known answers at both ends: w = 0 scores exactly as the model's row, w = 1 exactly as
    the classic 2DFTM's (one rescaling of all its distances does not change a ranking).
    The "model" here is random chunk vectors, which rank the works by chance."""
    rng = np.random.default_rng(12)
    chunks = [unit(rng.normal(size=(3, D))) for _ in tunes_set.recording_ids]
    model_row = score_set(tunes_set, chunks)
    twodftm_row = score_baselines([tunes_set], {"classic": params.baselines["classic"]})["baseline_2dftm"]
    for weight, want in ((0.0, model_row), (1.0, twodftm_row["synthetic"])):
        p = dataclasses.replace(params, fusion=dataclasses.replace(params.fusion, weight=weight,
                                                                   profile="classic", centre=False, fit=False),
                                index=dataclasses.replace(params.index, centre=False))
        got = score_ranking(tunes_set, chunks, p)["fused"]
        assert {k: got[k] for k in ("mAP", "MR1", "HR1", "n_queries")} == \
            {k: pytest.approx(want[k]) for k in ("mAP", "MR1", "HR1", "n_queries")}, weight
    assert twodftm_row["synthetic"]["mAP"] == pytest.approx(1.0)
    assert model_row["mAP"] < 0.8                    # so the two ends differ


def test_identify_ranks_by_the_fused_score_when_the_index_has_fusion(params, tunes_set):
    """The query's chunks are a little nearer to w1's recording than to w0's, but its 2DFTM
    is w0's: the model alone answers w1, the fusion w0. At weight 0 the fusion is ignored;
    a copy of a catalogue recording still scores 1."""
    bp = params.baselines["classic"]
    rng = np.random.default_rng(13)
    base = unit(rng.normal(size=(2, D)))
    vecs = [base[[0]], unit(base[[0]] + 0.1 * rng.normal(size=(1, D))), base[[1]]]
    ids, works = ["a0", "a1", "b0"], ["w0", "w0", "w1"]
    feats = [tunes_set.features[i] for i in (0, 1, 3)]      # a0, a1: tune 0; b0: tune 1
    twodftm = twodftm_vectors(feats, bp)
    index = ChunkIndex.from_recordings(vecs, [np.zeros(1)] * 3, CHUNK, ids, works, [CHUNK] * 3,
                                       spec(), META, twodftm)
    query = unit(0.45 * base[[0]] + 0.55 * base[[1]])         # a little nearer to b0
    q_2dftm = twodftm[0]                                     # the query plays a0's tune, as a0 does
    alone = rank(index, query, np.zeros(1), CHUNK, 3, 3, None, 2)
    assert alone[0].work_id == "w1"
    fusion = fit_catalogue(vecs, twodftm, 0.5, bp, 100, 0)
    fused = rank(index, query, np.zeros(1), CHUNK, 3, 3, None, 2, fusion, q_2dftm)
    assert fused[0].work_id == "w0"
    # the score is 1 - the fused distance of the best recording of w0 (a0: 2DFTM distance 0)
    assert fused[0].recording_id == "a0"
    assert fused[0].score == pytest.approx(0.5 * float(query[0] @ vecs[0][0]) + 0.5)
    copy = rank(index, vecs[2], np.zeros(1), CHUNK, 3, 3, None, 1, fusion, twodftm[2])
    assert (copy[0].recording_id, copy[0].score) == ("b0", pytest.approx(1.0))
    index.meta["fusion"] = dataclasses.replace(fusion, weight=0.0).as_dict()
    assert index_fusion(index) is None
    index.meta["fusion"] = fusion.as_dict()
    assert index_fusion(index) == fusion
    assert index_fusion(ChunkIndex(index.vectors, index.tags, index.spec, index.meta)) is None   # no vectors


def test_centring_removes_what_every_recording_shares(params):
    """Centred on the catalogue's mean, the 2DFTM distances are those of ``x - mean`` by hand,
    and adding one vector to every recording's 2DFTM (a component all share) leaves them
    unchanged, where it moves the raw cosines towards 0."""
    rng = np.random.default_rng(21)
    x = np.abs(rng.normal(size=(5, 8)))
    shared = 10.0 * np.abs(rng.normal(size=8))
    fusion = fit_catalogue([unit(rng.normal(size=(2, D))) for _ in range(5)], x, 0.3,
                           params.baselines["classic"], 100, 0, centre=True)
    assert fusion.centre == pytest.approx(tuple(x.mean(axis=0)))
    c = x - x.mean(axis=0)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    np.testing.assert_allclose(fusion.twodftm_distances(x, x), 1.0 - c @ c.T, atol=1e-12)
    moved = fit_catalogue([unit(rng.normal(size=(2, D))) for _ in range(5)], x + shared, 0.3,
                          params.baselines["classic"], 100, 0, centre=True)
    np.testing.assert_allclose(moved.twodftm_distances(x + shared, x + shared), 1.0 - c @ c.T, atol=1e-9)
    raw = twodftm_distances(unit(x), unit(x))
    raw_moved = twodftm_distances(unit(x + shared), unit(x + shared))
    assert raw_moved.max() < 0.1 * raw.max()                      # the shared part dominates raw cosines
    # the distance means are measured on the centred distances; the mean survives JSON
    off = ~np.eye(5, dtype=bool)
    assert fusion.twodftm_mean == pytest.approx(float((1.0 - c @ c.T)[off].mean()))
    assert Fusion.from_dict(json.loads(json.dumps(fusion.as_dict()))) == fusion
    assert fusion.summary()["centred"] and "centre" not in fusion.summary()
    # an index built before centring existed has no centre: its fusion compares raw cosines
    old = {k: v for k, v in fusion.as_dict().items() if k != "centre"}
    assert Fusion.from_dict(old).centre is None
    np.testing.assert_allclose(Fusion.from_dict(old).twodftm_distances(unit(x), unit(x)), raw)


def test_the_centred_row_is_the_fused_row_at_weight_1(params, tunes_set):
    """With ``fusion.centre`` the ranking rows include the centred 2DFTM alone, and at
    w = 1 the fused row is exactly it (one rescaling changes no ranking)."""
    rng = np.random.default_rng(12)
    chunks = [unit(rng.normal(size=(3, D))) for _ in tunes_set.recording_ids]
    p = dataclasses.replace(params, fusion=dataclasses.replace(params.fusion, weight=1.0, profile="classic",
                                                               centre=True, fit=False))
    rows = score_ranking(tunes_set, chunks, p)
    assert set(rows) == {"fused", "reranked", "baseline_2dftm_centred"}
    for key in ("mAP", "MR1", "HR1", "n_queries"):
        assert rows["fused"][key] == pytest.approx(rows["baseline_2dftm_centred"][key])
    off = dataclasses.replace(p, fusion=dataclasses.replace(p.fusion, centre=False))
    assert set(score_ranking(tunes_set, chunks, off)) == {"fused", "reranked"}


def test_a_fitted_ranking_reports_each_profile_and_the_folds_choices(params, tunes_set):
    """With ``fusion.fit`` and two profiles, each profile's centred 2DFTM has its row, and
    the fused row counts the folds that chose each profile. With chunk vectors drawn at
    random and a weight grid of 0 and 1 alone, every fold takes w = 1 (the 2DFTM alone);
    both profiles rank these melodies perfectly, so every fold keeps the first profile,
    and the fused row is its 2DFTM's."""
    rng = np.random.default_rng(16)
    chunks = [unit(rng.normal(size=(2, D))) for _ in tunes_set.recording_ids]
    p = dataclasses.replace(params, fusion=dataclasses.replace(params.fusion, fit=True, centre=True, fit_step=1.0,
                                                               plateau=0.0, profile="classic",
                                                               fit_profiles=["classic", "tuned"]),
                            index=dataclasses.replace(params.index, centre=False))
    rows = score_ranking(tunes_set, chunks, p)
    assert rows["baseline_2dftm_centred"]["mAP"] == rows["baseline_2dftm_tuned_centred"]["mAP"] == 1.0
    fused = rows["fused"]
    assert (fused["folds_classic"], fused["folds_tuned"]) == (3, 0)          # three works: three folds
    assert fused["weight_min"] == fused["weight_max"] == 1.0 and fused["mAP"] == 1.0
    assert score_set(tunes_set, chunks)["mAP"] < 0.9                        # the model alone could not


def test_identify_scores_a_centred_fusion_as_the_index_report_does(params, tunes_set):
    """``rank`` (identify) and ``track_similarities`` (the index stage's report) give one
    recording the same fused score when the fusion centres the 2DFTM."""
    from coverhunter.pipeline.index import track_similarities
    bp = params.baselines["classic"]
    rng = np.random.default_rng(14)
    vecs = [unit(rng.normal(size=(2, D))) for _ in tunes_set.recording_ids]
    ids, works = list(tunes_set.recording_ids), list(tunes_set.work_ids)
    twodftm = twodftm_vectors(tunes_set.features, bp)
    index = ChunkIndex.from_recordings(vecs, [np.zeros(2)] * len(ids), CHUNK, ids, works,
                                       [2 * CHUNK] * len(ids), spec(), META, twodftm)
    fusion = fit_catalogue(vecs, twodftm, 0.3, bp, 100, 0, centre=True)
    index.meta["fusion"] = fusion.as_dict()
    assert index_fusion(index) == fusion
    query = unit(vecs[4] + 0.3 * unit(rng.normal(size=(2, D))))
    got = rank(index, query, np.zeros(2), CHUNK, len(ids) * 2, len(ids), None, len(ids), fusion, twodftm[4])
    want = track_similarities(index, [query], twodftm[[4]], ids)[0]
    for m in got:
        assert m.score == pytest.approx(want[ids.index(m.recording_id)], abs=1e-6)   # float32 vectors
    assert got[0].recording_id == "w1-v1"


def test_with_index_centre_the_fused_row_at_weight_0_is_the_model_on_centred_vectors(params, tunes_set):
    """``index.centre``: the ranking rows see the chunk vectors centred on the set's own mean
    chunk vector (the set is its own catalogue), so at w = 0 the fused row is the model's row
    of those centred vectors. Here every chunk shares one large component, so centring
    changes the ranking (the model's own rows stay raw)."""
    rng = np.random.default_rng(15)
    shared = 3.0 * unit(rng.normal(size=D))
    chunks = [unit(shared + rng.normal(size=(3, D))) for _ in tunes_set.recording_ids]
    p = dataclasses.replace(params, fusion=dataclasses.replace(params.fusion, weight=0.0, fit=False),
                            index=dataclasses.replace(params.index, centre=True))
    got = score_ranking(tunes_set, chunks, p)["fused"]
    mean = np.concatenate(chunks).mean(axis=0)
    by_hand = [unit(c - mean) for c in chunks]
    np.testing.assert_allclose(centred_on_mean(chunks)[0][4], by_hand[4], atol=1e-6)
    want, raw = score_set(tunes_set, by_hand), score_set(tunes_set, chunks)
    assert got["mAP"] == pytest.approx(want["mAP"]) and got["MR1"] == pytest.approx(want["MR1"])
    assert raw["MR1"] != pytest.approx(want["MR1"])           # so the test tells the two apart


# two works of two recordings each: the model ranks them right (own 0.2, other 0.8), the
# 2DFTM wrong (own 0.8, other 0.2); means 0.6 and 0.4 over the distinct pairs, so the fused
# own-work distance is 0.2 + w, the other works' 0.8 - 0.5 w: right while w < 0.4
WORKS, IDS = ["a", "a", "b", "b"], ["a0", "a1", "b0", "b1"]
OWN = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], bool)
D_RIGHT = np.where(OWN, 0.2, 0.8) * (1 - np.eye(4))
D_WRONG = np.where(OWN, 0.8, 0.2) * (1 - np.eye(4))


def test_the_fitted_weight_is_the_largest_on_the_plateau_by_hand(params):
    """By hand (above): mAP 1 for w = 0 ... 0.3, below from 0.4 (a tie counts against), so
    the rule picks 0.3; with both distances right every weight scores 1 and it picks 1.
    Queries with no other version of their work cannot tell: None."""
    bp, off = params.baselines["classic"], dataclasses.replace(params.rerank, weight=0.0)
    fp = dataclasses.replace(params.fusion, fit=True, fit_step=0.1, plateau=0.0)
    fusion = fit_square(D_RIGHT, D_WRONG, 0.5, bp)
    assert (fusion.model_mean, fusion.twodftm_mean) == (pytest.approx(0.6), pytest.approx(0.4))
    assert fitted_choice({"classic": (fusion, D_WRONG)}, D_RIGHT, WORKS, IDS, fp, off) == ("classic", 0.3)
    both = fit_square(D_RIGHT, D_RIGHT, 0.5, bp)
    assert fitted_choice({"classic": (both, D_RIGHT)}, D_RIGHT, WORKS, IDS, fp, off) == ("classic", 1.0)
    assert fitted_choice({"classic": (fusion, D_WRONG)}, D_RIGHT, ["a", "b", "c", "d"], IDS, fp, off) is None
    # the plateau: at 0.4 each query's own version ties with both others and ranks last
    # (AP 1/3), and stays last beyond, so only a plateau of 2/3 takes those weights in
    aps = weight_aps(fusion, D_RIGHT, D_WRONG, WORKS, IDS, weight_grid(fp), off)
    np.testing.assert_allclose(aps, [[1.0] * 4] * 4 + [[1 / 3] * 4] * 7)
    assert best_weight(aps, np.arange(4), weight_grid(fp), 0.67) == 1.0
    assert best_weight(aps, np.arange(4), weight_grid(fp), 0.66) == 0.3
    assert best_weight(aps, np.array([0, 1]), weight_grid(fp), 0.0) == 0.3   # a subset of queries


def test_the_profile_is_fitted_with_the_weight_by_hand(params):
    """The model ranks both works wrong (D_WRONG, mean 0.4), as does the first profile's
    2DFTM; the second profile's ranks them right (D_RIGHT, mean 0.6, so rescaled by 2/3).
    With the second the fused own-work distance is 0.8 - (2/3) w against 0.2 + w/3 for the
    others: right above w = 0.6 (at 0.6 a tie, which counts against). The first profile
    scores 1/3 at every weight, the second 1 from 0.7: the second at 1.0. A plateau of 2/3
    takes the first profile in (the order is the preference), at its largest weight."""
    off = dataclasses.replace(params.rerank, weight=0.0)
    fp = dataclasses.replace(params.fusion, fit=True, fit_step=0.1, plateau=0.0)
    fusions = {"classic": (fit_square(D_WRONG, D_WRONG, 0.5, params.baselines["classic"], None, "classic"), D_WRONG),
               "tuned": (fit_square(D_WRONG, D_RIGHT, 0.5, params.baselines["tuned"], None, "tuned"), D_RIGHT)}
    assert fitted_choice(fusions, D_WRONG, WORKS, IDS, fp, off) == ("tuned", 1.0)
    aps = profile_aps(fusions, D_WRONG, WORKS, IDS, weight_grid(fp), off)
    np.testing.assert_allclose(aps["classic"], [[1 / 3] * 4] * 11)
    np.testing.assert_allclose(aps["tuned"], [[1 / 3] * 4] * 7 + [[1.0] * 4] * 4)
    assert best_choice(aps, np.arange(4), weight_grid(fp), 0.66) == ("tuned", 1.0)
    assert best_choice(aps, np.arange(4), weight_grid(fp), 0.67) == ("classic", 1.0)
    assert best_choice(aps, np.array([0, 1]), weight_grid(fp), 0.0) == ("tuned", 1.0)   # a subset of queries


def test_cross_fitting_scores_each_fold_with_the_choice_fitted_on_the_others(params):
    """Two works, two folds: each is scored at the weight fitted on the other, 0.3 both
    ways, so the rows are the fusion at 0.3; where the other folds cannot tell (their
    works have one recording each), the first profile at its fixed weight stands in. With
    a second profile that ranks right where the first ranks wrong (the test above), every
    fold takes the second."""
    bp, off = params.baselines["classic"], dataclasses.replace(params.rerank, weight=0.0)
    fp = dataclasses.replace(params.fusion, fit=True, fit_step=0.1, plateau=0.0, weight=0.5, fit_folds=8)
    fusion = fit_square(D_RIGHT, D_WRONG, 0.5, bp, None, "classic")
    fused, reranked, choices = cross_fitted({"classic": (fusion, D_WRONG)}, D_RIGHT, WORKS, IDS, fp, off, seed=0)
    assert choices == [("classic", 0.3), ("classic", 0.3)]           # two works: two folds
    np.testing.assert_allclose(fused, dataclasses.replace(fusion, weight=0.3).distances(D_RIGHT, D_WRONG))
    np.testing.assert_allclose(reranked, fused)                       # re-ranking off
    _, _, choices = cross_fitted({"classic": (fusion, D_WRONG)}, D_RIGHT, ["a", "a", "b", "c"], IDS, fp, off, seed=0)
    assert sorted(choices) == [("classic", 0.3), ("classic", 0.3), ("classic", 0.5)]   # a's fold: b, c cannot tell
    wrong = fit_square(D_WRONG, D_WRONG, 0.5, bp, None, "classic")
    tuned = fit_square(D_WRONG, D_RIGHT, 0.5, params.baselines["tuned"], None, "tuned")
    fused, _, choices = cross_fitted({"classic": (wrong, D_WRONG), "tuned": (tuned, D_RIGHT)}, D_WRONG, WORKS, IDS,
                                     fp, off, seed=0)
    assert choices == [("tuned", 1.0), ("tuned", 1.0)]
    np.testing.assert_allclose(fused, D_RIGHT * 2 / 3)     # all on the 2DFTM, rescaled by the means 0.4 / 0.6
