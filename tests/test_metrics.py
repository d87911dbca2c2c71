import math

import numpy as np
import pytest

from coverhunter.retrieval.metrics import average_precisions, retrieval_metrics, track_distances

# Gallery g1..g5 with works A, B, A, C, A. Queries:
#  q=g1 (work A, its own row is left out): ranking g4 .1 (C), g2 .2 (B), g3 .4 (A), g5 .4 (A)
#     relevant at ranks 3 and 4 → AP = (1/3 + 2/4)/2 = 5/12, first rank 3, P@10 = 2/10
#  q2 (work B): g4 .1 (C), then a tie at .3 between g1 (A) and g2 (B): the tie rule puts the
#     irrelevant g1 first, so g2 is rank 3 → AP = 1/3, first rank 3, P@10 = 1/10
#  q3 (work A): g1 .05 (A), g2 (B), g3 (A), g4 (C), g5 (A) → relevant at ranks 1, 3, 5
#     → AP = (1 + 2/3 + 3/5)/3 = 34/45, first rank 1, P@10 = 3/10
#  q4 (work D): no relevant item in the gallery → left out of the means, counted
GALLERY_IDS = ["g1", "g2", "g3", "g4", "g5"]
GALLERY_WORKS = ["A", "B", "A", "C", "A"]
QUERY_IDS = ["g1", "q2", "q3", "q4"]
QUERY_WORKS = ["A", "B", "A", "D"]
DIST = np.array([[0.0, 0.2, 0.4, 0.1, 0.4],
                 [0.3, 0.3, 0.9, 0.1, 0.5],
                 [0.05, 0.5, 0.6, 0.7, 0.8],
                 [0.1, 0.2, 0.3, 0.4, 0.5]])


def test_hand_worked_example():
    m = retrieval_metrics(DIST, QUERY_WORKS, GALLERY_WORKS, QUERY_IDS, GALLERY_IDS)
    assert m["mAP"] == pytest.approx((5 / 12 + 1 / 3 + 34 / 45) / 3)   # 271/540
    assert m["MR1"] == pytest.approx((3 + 3 + 1) / 3)
    assert m["HR1"] == pytest.approx(1 / 3)
    assert m["P10"] == pytest.approx((0.2 + 0.1 + 0.3) / 3)
    assert m["n_queries"] == 3 and m["n_queries_without_relevant"] == 1
    ap = average_precisions(DIST, QUERY_WORKS, GALLERY_WORKS, QUERY_IDS, GALLERY_IDS)
    np.testing.assert_allclose(ap[:3], [5 / 12, 1 / 3, 34 / 45])
    assert math.isnan(ap[3])                                            # q4: nothing relevant


def test_gallery_order_does_not_change_the_result():
    perm = [4, 2, 0, 3, 1]
    a = retrieval_metrics(DIST, QUERY_WORKS, GALLERY_WORKS, QUERY_IDS, GALLERY_IDS)
    b = retrieval_metrics(DIST[:, perm], QUERY_WORKS, np.array(GALLERY_WORKS)[perm],
                          QUERY_IDS, np.array(GALLERY_IDS)[perm])
    assert a == b


def test_without_ids_the_self_match_counts():
    # q=g1 now keeps g1 (distance 0, work A) at rank 1: relevant ranks 1, 4, 5
    m = retrieval_metrics(DIST[:1], ["A"], GALLERY_WORKS)
    assert m["mAP"] == pytest.approx((1 + 2 / 4 + 3 / 5) / 3)
    assert m["HR1"] == 1.0 and m["MR1"] == 1.0


def test_constant_distances_score_the_worst_case():
    # every tie resolved against the query: relevant items sit after all irrelevant ones
    m = retrieval_metrics(np.zeros((1, 4)), ["A"], ["A", "B", "C", "A"])
    assert m["MR1"] == 3.0
    assert m["mAP"] == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.array([[np.nan]]), ["A"], ["A"])
    with pytest.raises(ValueError, match="gallery_work_ids has 1 entries, expected 2"):
        retrieval_metrics(np.zeros((1, 2)), ["A"], ["A"])
    with pytest.raises(ValueError, match="both"):
        retrieval_metrics(np.zeros((1, 1)), ["A"], ["A"], query_ids=["x"])


def test_track_distance_is_the_closest_chunk_pair():
    s = 1 / math.sqrt(2)
    query = [np.array([[1.0, 0.0], [0.0, 1.0]])]
    gallery = [np.array([[0.0, 2.0]]),                 # same direction as query chunk 2 → 0
               np.array([[-1.0, 0.0], [s, s]])]        # best pair cos = s → 1 - s
    d = track_distances(query, gallery)
    assert d.shape == (1, 2)
    assert d[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert d[0, 1] == pytest.approx(1 - s, abs=1e-6)


def test_track_distance_matches_brute_force():
    rng = np.random.default_rng(0)
    queries = [rng.normal(size=(n, 8)) for n in (1, 4, 2, 7)]
    gallery = [rng.normal(size=(n, 8)) for n in (3, 1, 5)]
    unit = lambda v: v / np.linalg.norm(v)
    brute = np.array([[min(1 - unit(a) @ unit(b) for a in q for b in g) for g in gallery]
                      for q in queries])
    np.testing.assert_allclose(track_distances(queries, gallery), brute, atol=1e-6)
