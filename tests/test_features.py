import dataclasses

import librosa
import numpy as np
import pytest
import torch
from synth import melody, tone

from coverhunter.demo.render import load_corpus_score, render_score
from coverhunter.features.cqt import CQTFrontEnd, batches_by_duration, extract_cqt


@pytest.fixture(scope="module", params=["multirate", "nnaudio"])
def front(params, request):
    """Each front end (``features.cqt``): the known answers hold for both."""
    return CQTFrontEnd(dataclasses.replace(params.features, cqt=request.param))


@pytest.mark.parametrize("freq", [55.0, 220.0, 440.0, 1760.0])
def test_pure_tone_peaks_in_the_predicted_bin(front, params, freq):
    # bin k sits at fmin · 2^(k/12): 440 Hz is 12·log2(440/32.703) = 45.0 bins above C1
    p = params.features
    expected = round(p.bins_per_octave * np.log2(freq / p.fmin))
    feats = extract_cqt([tone(freq, 3.0, p.sample_rate)], front)[0]
    assert feats.shape[1] == 96
    assert feats[10:-10].mean(axis=0).argmax() == expected


def test_frame_rate_is_25_per_second(front, params):
    sr = params.features.sample_rate
    feats = extract_cqt([np.zeros(10 * sr, dtype=np.float32)], front)[0]
    assert feats.shape == (10 * 25 + 1, 96)          # centred frames: 1 + n // hop


def test_log_magnitude_is_relative_to_the_recording_max(front, params):
    sr = params.features.sample_rate
    x = tone(440.0, 2.0, sr)
    loud, quiet = extract_cqt([x, 0.1 * x], front)
    assert loud.max() == pytest.approx(0.0, abs=1e-4)
    assert loud.min() >= -params.features.top_db
    # a gain change moves every dB value equally, so relative to the max nothing changes
    above_floor = loud > -params.features.top_db + 25
    np.testing.assert_allclose(loud[above_floor], quiet[above_floor], atol=1e-3)


def test_batched_equals_one_at_a_time(front, params):
    """A recording's features, its last frames too, do not depend on what it is batched with."""
    rng = np.random.default_rng(0)
    sr = params.features.sample_rate
    audios = [rng.standard_normal(n).astype(np.float32) for n in (5 * sr, 3 * sr + 17, sr // 2)]
    together = extract_cqt(audios, front)
    for a, t in zip(audios, together):
        np.testing.assert_array_equal(t, extract_cqt([a], front)[0])


def test_batches_respect_the_budget():
    assert list(batches_by_duration([5, 5, 5, 20, 1], max_samples=12)) == [[0, 1], [2], [3], [4]]


def test_correlates_with_librosa_on_rendered_music(front, params):
    """Green Sleeves (Ryan's Mammoth Collection) rendered on a GM piano: the log-CQT
    against librosa.cqt with the same settings. librosa refuses 96 bins at 16 kHz (the top
    bin's band passes Nyquist), so both use the lowest 95."""
    p = params.features
    audio = render_score(load_corpus_score("ryansMammoth/GreenSleevesJig"), p.sample_rate)
    audio = audio[: 30 * p.sample_rate]
    ours = extract_cqt([audio], front)[0][:, :95]
    mag = np.abs(librosa.cqt(audio, sr=p.sample_rate, hop_length=p.hop_length, fmin=p.fmin,
                             n_bins=95, bins_per_octave=p.bins_per_octave))
    ref = librosa.amplitude_to_db(mag, ref=np.max, amin=p.amin, top_db=p.top_db).T
    assert ours.shape == ref.shape
    r = np.corrcoef(ours.ravel(), ref.ravel())[0, 1]
    assert r >= 0.95, f"log-CQT correlation with librosa is {r:.3f}"


# ---- the multirate front end against the nnAudio reference ---------------------------

def test_multirate_cqt_peaks_at_every_bin_centre_and_keeps_the_frames(params):
    """A sine at each bin's centre frequency peaks in that bin with either front end, at the
    same magnitude (to 0.5 %: 0.04 dB), and both give samples // hop + 1 frames."""
    from nnAudio.features.cqt import CQT1992v2

    from coverhunter.features.multirate import MultirateCQT
    p = params.features
    mr = MultirateCQT(p)
    ref = CQT1992v2(sr=p.sample_rate, hop_length=p.hop_length, fmin=p.fmin, n_bins=p.n_bins,
                    bins_per_octave=p.bins_per_octave, center=True, pad_mode="constant",
                    output_format="Magnitude", verbose=False)
    t = np.arange(2 * p.sample_rate + 123) / p.sample_rate
    freqs = p.fmin * 2.0 ** (np.arange(p.n_bins) / p.bins_per_octave)
    x = torch.tensor(np.stack([0.5 * np.sin(2 * np.pi * f * t) for f in freqs]), dtype=torch.float32)
    a, b = mr(x), ref(x)                                              # (96, bins, frames)
    assert a.shape == b.shape and a.shape[-1] == len(t) // p.hop_length + 1
    mid = slice(15, 35)
    assert (a[..., mid].mean(-1).argmax(-1) == torch.arange(p.n_bins)).all()
    peak_a = a[..., mid].mean(-1).diagonal()
    peak_b = b[..., mid].mean(-1).diagonal()
    np.testing.assert_allclose(peak_a.numpy(), peak_b.numpy(), rtol=5e-3)   # 0.04 dB
    with pytest.raises(ValueError, match="features.cqt"):
        dataclasses.replace(p, cqt="fast")


def test_multirate_log_cqt_matches_nnaudio_on_music(params):
    """A melody with harmonics and noise: the two log-CQTs (dB re max, floored at -80)
    correlate at r >= 0.99, alone and inside a padded batch."""
    rng = np.random.default_rng(3)
    sr = params.features.sample_rate
    audio = melody(rng.integers(36, 96, 60), 0.25, sr, np.array([1.0, 0.6, 0.3, 0.2]), rng, noise=0.01)
    ref = extract_cqt([audio], CQTFrontEnd(dataclasses.replace(params.features, cqt="nnaudio")))[0]
    front = CQTFrontEnd(dataclasses.replace(params.features, cqt="multirate"))
    (alone,), (batched, _) = extract_cqt([audio], front), extract_cqt([audio, audio[: sr * 3]], front)
    assert alone.shape == ref.shape
    assert np.corrcoef(alone.ravel(), ref.ravel())[0, 1] >= 0.99
    np.testing.assert_allclose(alone, batched, atol=1e-3)    # float rounding only (float16 on disk: 0.03 dB)


@pytest.mark.parametrize("n", [1, 2, 31, 32, 33, 1000, 48_001])
def test_multirate_halving_is_low_pass_then_every_second_sample(params, n):
    """The blocked halving equals its definition: the half-band filter centred on each even
    input sample (zero padding outside), computed here with numpy, for any length."""
    from coverhunter.features.multirate import HALFBAND_TAPS, MultirateCQT
    mr = MultirateCQT(params.features)
    x = np.random.default_rng(n).standard_normal((2, n)).astype(np.float32)
    h = mr.halve_kernel[0, 0, :HALFBAND_TAPS].numpy().astype(np.float64)
    half = HALFBAND_TAPS // 2
    want = np.stack([np.convolve(row, h)[half: half + n: 2] for row in x])    # h is symmetric
    got = mr._halve(torch.from_numpy(x)[:, None])[:, 0].numpy()
    assert got.shape == (2, (n + 1) // 2)
    np.testing.assert_allclose(got, want, atol=1e-5)
