import numpy as np
import pytest

from coverhunter.features.chunking import chunk_features, chunk_starts, seconds_to_frames


def test_seconds_to_frames_at_25_fps():
    assert seconds_to_frames(45.0, 25.0) == 1125
    assert seconds_to_frames(15.0, 25.0) == 375
    assert seconds_to_frames(7.5, 25.0) == 188  # 187.5 rounds half to even → 188


def test_overlapping_chunks_cover_the_tail():
    # 100 frames, chunks of 30, hop 15: 0,15,...,60 end at 90; one more flush with the end
    assert chunk_starts(100, 30, 15).tolist() == [0, 15, 30, 45, 60, 70]


def test_exact_fit_adds_no_extra_chunk():
    assert chunk_starts(90, 30, 30).tolist() == [0, 30, 60]


def test_short_sequence_is_one_short_chunk():
    starts, chunks = chunk_features(np.zeros((20, 96)), 45.0, 45.0, 25.0)
    assert starts.tolist() == [0] and chunks[0].shape == (20, 96)


def test_paper_inference_chunks_of_a_100_s_track():
    feats = np.arange(2500)[:, None] * np.ones((1, 3))          # 100 s at 25 fps
    starts, chunks = chunk_features(feats, 45.0, 45.0, 25.0)
    assert starts.tolist() == [0, 1125, 1375]
    assert all(c.shape == (1125, 3) for c in chunks)
    assert chunks[2][-1, 0] == 2499                              # the last frame is covered


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="empty"):
        chunk_starts(0, 10, 5)
    with pytest.raises(ValueError, match="positive"):
        chunk_starts(10, 10, 0)
