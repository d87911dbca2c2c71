"""Audio-domain transforms (coverhunter.features.effects), checked against known answers."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import welch

from coverhunter.features.effects import coloured_noise, fade, gain_db, mix_at_snr, peak_normalise, reverb

SR = 16_000


def _tone(seconds: float = 1.0, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _snr_db(clean: np.ndarray, mixed: np.ndarray) -> float:
    clean = clean.astype(np.float64)
    noise = mixed.astype(np.float64) - clean
    return float(10 * np.log10(np.sum(clean**2) / np.sum(noise**2)))


@pytest.mark.parametrize("snr", [-10.0, 0.0, 7.5, 30.0])
@pytest.mark.parametrize("noise_len", [3_000, 16_000, 50_000])  # looped, equal, cropped
def test_mix_at_snr_is_exact(snr: float, noise_len: int) -> None:
    x = _tone()
    noise = coloured_noise(noise_len, 1.0, np.random.default_rng(0))
    mixed = mix_at_snr(x, noise, snr)
    assert mixed.shape == x.shape and mixed.dtype == np.float32
    assert _snr_db(x, mixed) == pytest.approx(snr, abs=0.01)


def test_mix_at_snr_loops_short_noise() -> None:
    x = _tone(0.5)
    mixed = mix_at_snr(x, np.array([1.0, -1.0, 0.5], dtype=np.float32), 10.0)
    residual = mixed.astype(np.float64) - x
    np.testing.assert_allclose(residual[3:6], residual[:3], rtol=1e-4, atol=1e-7)


def test_mix_at_snr_refuses_silence() -> None:
    with pytest.raises(ValueError, match="silent signal"):
        mix_at_snr(np.zeros(100, np.float32), np.ones(100, np.float32), 10.0)
    with pytest.raises(ValueError, match="silent noise"):
        mix_at_snr(_tone(), np.zeros(100, np.float32), 10.0)


def test_gain_minus_6_db_halves_amplitude() -> None:
    x = _tone()
    y = gain_db(x, -6.0)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x * 0.501187, rtol=1e-5)
    np.testing.assert_allclose(gain_db(x, 20.0), x * 10.0, rtol=1e-5)


def test_peak_normalise() -> None:
    y = peak_normalise(_tone(), 0.8)
    assert np.abs(y).max() == pytest.approx(0.8, rel=1e-6)
    assert not peak_normalise(np.zeros(10, np.float32)).any()


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_coloured_noise_spectral_slope(exponent: float) -> None:
    noise = coloured_noise(2**17, exponent, np.random.default_rng(1))
    assert noise.dtype == np.float32 and noise.shape == (2**17,)
    assert np.sqrt(np.mean(noise.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)
    freqs, psd = welch(noise, fs=SR, nperseg=4096)
    band = (freqs >= 50) & (freqs <= 4000)
    slope = np.polyfit(np.log10(freqs[band]), np.log10(psd[band]), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.2)


def _decay_time(y: np.ndarray) -> float:
    """RT60 from Schroeder's backward-integrated energy, fitted between -5 and -35 dB."""
    energy = np.cumsum((y.astype(np.float64) ** 2)[::-1])[::-1]
    edc = 10 * np.log10(energy / energy[0])
    fit = (edc <= -5) & (edc >= -35)
    slope = np.polyfit(np.arange(y.size)[fit] / SR, edc[fit], 1)[0]  # dB per second
    return -60.0 / slope


@pytest.mark.parametrize("rt60", [0.3, 0.8, 2.0])
def test_reverb_decay_time_matches_rt60(rt60: float) -> None:
    impulse = np.zeros(round(2.5 * rt60 * SR), np.float32)
    impulse[0] = 1.0
    y = reverb(impulse, SR, rt60, wet=1.0, rng=np.random.default_rng(2))
    assert y.shape == impulse.shape and y.dtype == np.float32
    assert _decay_time(y) == pytest.approx(rt60, rel=0.25)


def test_reverb_keeps_length_and_mixes_dry_signal() -> None:
    x = _tone(0.7)
    rng = np.random.default_rng(3)
    assert reverb(x, SR, 1.5, 0.4, rng).shape == x.shape  # the tail is cropped
    np.testing.assert_allclose(reverb(x, SR, 1.5, 0.0, rng), x, atol=1e-7)


def test_random_transforms_are_deterministic_under_a_seed() -> None:
    x = _tone()
    for make in (lambda r: coloured_noise(1000, 1.5, r), lambda r: reverb(x, SR, 0.5, 0.5, r)):
        a, b, c = make(np.random.default_rng(7)), make(np.random.default_rng(7)), make(
            np.random.default_rng(8))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_inputs_are_not_modified() -> None:
    x = _tone()
    before = x.copy()
    for y in (gain_db(x, 3.0), peak_normalise(x), fade(x, SR, 0.1, 0.1),
              reverb(x, SR, 0.4, 0.5, np.random.default_rng(0)),
              mix_at_snr(x, np.ones(10, np.float32), 5.0)):
        assert y is not x
    np.testing.assert_array_equal(x, before)


def test_fade_ramps() -> None:
    y = fade(np.ones(SR, np.float32), SR, in_s=0.1, out_s=0.25)
    assert y[0] < 0.01 and y[-1] < 0.01
    assert y[1600:12000].min() == 1.0
    assert np.all(np.diff(y[:1600]) >= 0) and np.all(np.diff(y[-4000:]) <= 0)
