import numpy as np
import pytest

from coverhunter.training.sampler import PKSampler

# 3 works; work 0 has recordings 10, 11, 12 (2 chunks each), work 1 has 20, 21, work 2 has 30
LABELS = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2]
RECORDINGS = [10, 10, 11, 11, 12, 12, 20, 21, 21, 30]


def test_batch_is_p_works_by_k_distinct_versions():
    sampler = PKSampler(LABELS, RECORDINGS, p=2, k=3, seed=0)
    labels, recs = np.asarray(LABELS), np.asarray(RECORDINGS)
    for _ in range(50):
        batch = sampler.sample()
        assert len(batch) == 6
        groups = [batch[:3], batch[3:]]
        assert labels[groups[0][0]] != labels[groups[1][0]]
        for group in groups:
            assert len(set(labels[group])) == 1
            work_recs = set(recs[labels == labels[group[0]]])
            # distinct recordings whenever the work has at least K of them
            if len(work_recs) >= 3:
                assert len(set(recs[group])) == 3


def test_state_round_trip_replays_the_same_batches():
    a = PKSampler(LABELS, RECORDINGS, p=2, k=2, seed=7)
    for _ in range(5):
        a.sample()
    state = a.state_dict()
    expected = [a.sample().tolist() for _ in range(5)]
    b = PKSampler(LABELS, RECORDINGS, p=2, k=2, seed=999)
    b.load_state_dict(state)
    assert [b.sample().tolist() for _ in range(5)] == expected


def test_one_work_is_refused():
    with pytest.raises(ValueError, match="at least two works"):
        PKSampler([0, 0], [1, 2], p=2, k=2, seed=0)
