"""Mutual-neighbour re-ranking of a shortlist (coverhunter/retrieval/rerank.py), by hand,
in leave-one-out evaluation and in identify's order."""
from __future__ import annotations

import numpy as np
import pytest
from test_index import CHUNK, META, D, spec

from coverhunter.params import RerankParams
from coverhunter.retrieval.index import ChunkIndex
from coverhunter.retrieval.metrics import retrieval_metrics
from coverhunter.retrieval.rerank import neighbour_rerank, rerank_square
from coverhunter.retrieval.search import rank

# three shortlisted recordings c0, c1, c2: c0 and c2 are each other's nearest (0.8)
AMONG = np.array([[1.0, 0.3, 0.8], [0.3, 1.0, 0.2], [0.8, 0.2, 1.0]])


def test_scores_by_hand():
    """Query similarities 0.9, 0.6, 0.5. The query's best c0 has no one nearer than the
    query (0.8 < 0.9), so a = s(c0, ·) = (1, 0.3, 0.8). c0 and c2 are mutual nearest, c1 is
    nobody's, so b = (s(q, c2), s(q, c1), s(q, c0)) = (0.5, 0.6, 0.9). With w = 1,
    r = (2s + a + b) / 4 = (0.825, 0.525, 0.675): c2, close to the best match and vouched
    for by it, passes c1."""
    r = neighbour_rerank(np.array([0.9, 0.6, 0.5]), AMONG, 1.0)
    np.testing.assert_allclose(r, [0.825, 0.525, 0.675])
    # w = 0.5: (2s + 0.5a + 0.5b) / 3
    np.testing.assert_allclose(neighbour_rerank(np.array([0.9, 0.6, 0.5]), AMONG, 0.5),
                               [(1.8 + 0.5 + 0.25) / 3, (1.2 + 0.15 + 0.3) / 3, (1.0 + 0.4 + 0.45) / 3])


def test_a_best_match_nearer_to_another_recording_than_to_the_query_adds_nothing():
    """Query similarities 0.7, 0.6, 0.5: c2 is nearer to c0 (0.8) than the query is, so the
    query side is off (a = s); the catalogue side is as before: b = (0.5, 0.6, 0.7)."""
    s = np.array([0.7, 0.6, 0.5])
    np.testing.assert_allclose(neighbour_rerank(s, AMONG, 1.0), [(2.1 + 0.5) / 4, (1.8 + 0.6) / 4, (1.5 + 0.7) / 4])


def test_weight_0_or_a_shortlist_of_one_leaves_the_scores_alone():
    s = np.array([0.9, 0.6, 0.5])
    assert np.array_equal(neighbour_rerank(s, AMONG, 0.0), s)
    assert np.array_equal(neighbour_rerank(s[:1], AMONG[:1, :1], 1.0), s[:1])
    d = 1.0 - AMONG
    assert rerank_square(d, 50, 0.0) is d or np.array_equal(rerank_square(d, 50, 0.0), d)


def test_a_set_re_ranked_leave_one_out_lifts_the_far_version_and_never_uses_the_query():
    """Work A: a0, a1, a2; work B: b0, b1. a2 is far from a0 (0.45) but close to a1, which
    is close to a0; b0 sits at 0.4 from a0. Alone, a0's ranking is a1, b0, a2, b1 (AP 0.833);
    re-ranked, a2 passes b0 (AP 1). Each row is the shortlist's re-ranking without the query
    itself, and the rest of a row stays behind its shortlist, in order."""
    d = np.array([[0.0, 0.1, 0.45, 0.4, 0.7],
                  [0.1, 0.0, 0.12, 0.5, 0.6],
                  [0.45, 0.12, 0.0, 0.6, 0.5],
                  [0.4, 0.5, 0.6, 0.0, 0.2],
                  [0.7, 0.6, 0.5, 0.2, 0.0]])
    works, ids = ["A", "A", "A", "B", "B"], ["a0", "a1", "a2", "b0", "b1"]
    ap = retrieval_metrics(d[:1], works[:1], works, ids[:1], ids)["mAP"]
    assert ap == pytest.approx((1 + 2 / 3) / 2)
    r = rerank_square(d, 50, 1.0)
    assert retrieval_metrics(r[:1], works[:1], works, ids[:1], ids)["mAP"] == pytest.approx(1.0)
    others = [1, 2, 3, 4]
    want = 1.0 - neighbour_rerank(1.0 - d[0, others], 1.0 - d[np.ix_(others, others)], 1.0)
    np.testing.assert_allclose(r[0, others], want)
    assert retrieval_metrics(r, works, works, ids, ids)["mAP"] > retrieval_metrics(d, works, works, ids, ids)["mAP"]
    # a shortlist of 2: a1 and b0 re-ranked, a2 and b1 behind them in their order
    two = rerank_square(d, 2, 1.0)
    assert two[0, 2] > two[0, [1, 3]].max() and two[0, 4] > two[0, 2]
    np.testing.assert_allclose(two[0, 4] - two[0, 2], d[0, 4] - d[0, 2])


def basis(*coords):
    v = np.zeros(D, np.float32)
    v[:len(coords)] = coords
    return v


def test_identify_orders_works_by_the_re_ranked_score_and_decides_on_the_direct_one():
    """The query q = e1. a0 (work A) at 0.9; b0 (work B) at 0.6; c0 (work C) at 0.5, but
    c0 is close to a0 (0.8) and they are each other's nearest: the scores of the first
    hand-computed test, within 1e-3. Re-ranked, C passes B; each work's `score` stays its
    direct similarity, and the threshold 0.55 decides on it."""
    a0 = basis(0.9, np.sqrt(1 - 0.81))
    b0 = basis(0.6, 0.0, 0.8)
    x = (0.8 - 0.45) / np.sqrt(1 - 0.81)                       # a0 · c0 = 0.8
    c0 = basis(0.5, x, 0.0, np.sqrt(1 - 0.25 - x * x))
    index = ChunkIndex.from_recordings([a0[None], b0[None], c0[None]], [np.zeros(1)] * 3, CHUNK,
                                       ["a0", "b0", "c0"], ["A", "B", "C"], [CHUNK] * 3, spec(), META)
    q = basis(1.0)[None]
    plain = rank(index, q, np.zeros(1), CHUNK, 3, 3, 0.55, 3)
    assert [m.work_id for m in plain] == ["A", "B", "C"]
    assert [m.rank_score for m in plain] == pytest.approx([m.score for m in plain])
    off = rank(index, q, np.zeros(1), CHUNK, 3, 3, 0.55, 3, rerank=RerankParams(weight=0.0, shortlist=50))
    assert [m.as_dict() for m in off] == [m.as_dict() for m in plain]
    got = rank(index, q, np.zeros(1), CHUNK, 3, 3, 0.55, 3, rerank=RerankParams(weight=1.0, shortlist=50))
    assert [m.work_id for m in got] == ["A", "C", "B"]
    assert [m.score for m in got] == pytest.approx([0.9, 0.5, 0.6], abs=1e-6)
    assert [m.decision for m in got] == ["cover", "no match", "cover"]
    # a0: b(a0) = s(q, c0); c0: a = s(a0, c0), b = s(q, a0); b0: a = s(a0, b0) = 0.54, b = its own
    assert [m.rank_score for m in got] == pytest.approx([(1.8 + 1 + 0.5) / 4, (1 + 0.8 + 0.9) / 4,
                                                         (1.2 + 0.54 + 0.6) / 4], abs=1e-6)
