"""Audio-domain transforms: gain, noise at an exact SNR, coloured noise, room reverb,
shelving EQ and a compressor.

Each function is small and pure: it takes mono float32 audio of shape ``(n_samples,)``
and returns a new float32 array (the input is never modified). Functions that draw
random numbers take an explicit ``rng: numpy.random.Generator``, so a seed fixes the
result. The demo catalogue (:mod:`coverhunter.demo`) uses them to make versions sound
recorded in different rooms and conditions; on-the-fly training augmentation (the
paper's noise and volume tricks, III-A) can reuse them unchanged.

Units: levels in dB (20·log10 of an amplitude ratio, 10·log10 of a power ratio), times in
seconds, sample rates in Hz.
"""
from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft
from scipy.signal import oaconvolve, sosfilt

__all__ = ["coloured_noise", "compress", "fade", "gain_db", "mix_at_snr", "peak_normalise",
           "reverb", "shelf_eq"]

_DB_60 = 3.0 * np.log(10.0)  # ln(1000): an amplitude falls 60 dB when its log falls this much


def gain_db(x: np.ndarray, db: float) -> np.ndarray:
    """``x`` scaled by ``db`` decibels (amplitude × 10^(db/20); -6 dB ≈ × 0.501)."""
    return (np.asarray(x, dtype=np.float64) * 10.0 ** (db / 20.0)).astype(np.float32)


def peak_normalise(x: np.ndarray, peak: float = 1.0) -> np.ndarray:
    """``x`` scaled so that its largest absolute sample is ``peak``; silence stays silent."""
    x = np.asarray(x, dtype=np.float64)
    top = float(np.abs(x).max(initial=0.0))
    if top == 0.0:
        return x.astype(np.float32)
    return (x * (peak / top)).astype(np.float32)


def mix_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``x`` plus ``noise`` scaled so that signal power / noise power is exactly ``snr_db``.

    ``noise`` is looped (if shorter) or cropped (if longer) to ``len(x)``. Powers are
    mean squares over the whole signal, so the measured SNR of the output,
    ``10·log10(Σx² / Σ(out - x)²)``, equals ``snr_db``. Shape ``(n,)`` → ``(n,)``.
    """
    x = np.asarray(x, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    if x.size == 0:
        return x.astype(np.float32)
    if noise.size == 0:
        raise ValueError("mix_at_snr: the noise is empty")
    noise = np.resize(noise, x.shape)  # repeats the noise cyclically, or crops it
    p_signal = float(np.mean(x * x))
    p_noise = float(np.mean(noise * noise))
    if p_signal == 0.0 or p_noise == 0.0:
        raise ValueError(
            f"mix_at_snr: the SNR is undefined for a silent "
            f"{'signal' if p_signal == 0.0 else 'noise'}")
    scale = np.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (x + scale * noise).astype(np.float32)


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of 1/f^exponent noise with unit RMS and zero mean.

    The power spectral density falls as ``f ** -exponent``: 0 is white, 1 pink, 2 brown
    (a slope of -3, -6 dB per octave for 1, 2). White Gaussian noise is shaped in the
    frequency domain, so any real exponent works. Shape ``(n,)``, float32.
    """
    if n <= 0:
        return np.zeros(max(n, 0), dtype=np.float32)
    m = sp_fft.next_fast_len(n, real=True)  # an FFT of a length with a large prime is slow
    spectrum = sp_fft.rfft(rng.standard_normal(m))
    freqs = sp_fft.rfftfreq(m)  # cycles per sample; the scale is irrelevant to the slope
    shape = np.zeros_like(freqs)
    shape[1:] = freqs[1:] ** (-exponent / 2.0)  # amplitude ∝ f^(-exponent/2); no DC
    noise = sp_fft.irfft(spectrum * shape, m)[:n]
    noise -= noise.mean()
    rms = float(np.sqrt(np.mean(noise * noise)))
    return (noise / rms if rms > 0 else noise).astype(np.float32)


def reverb(x: np.ndarray, sample_rate: int, rt60_s: float, wet: float,
           rng: np.random.Generator) -> np.ndarray:
    """``x`` in a synthetic room: ``(1 - wet)·x + wet·(x ∗ h)``, cropped to ``len(x)``.

    ``h`` is Gaussian noise under an exponential envelope that falls 60 dB in ``rt60_s``
    seconds (the room's reverberation time), ``rt60_s`` long and scaled to unit energy, so
    the reverberant part is about as loud as the dry one. The convolution is done by FFT
    (overlap-add). ``wet`` in [0, 1]: 0 returns ``x``, 1 only the reverberant part.
    Shape ``(n,)`` → ``(n,)``.
    """
    if rt60_s <= 0 or not 0.0 <= wet <= 1.0:
        raise ValueError(f"reverb: need rt60_s > 0 and 0 <= wet <= 1, got {rt60_s}, {wet}")
    x = np.asarray(x, dtype=np.float64)
    n_ir = max(1, round(rt60_s * sample_rate))
    t = np.arange(n_ir) / sample_rate
    ir = rng.standard_normal(n_ir) * np.exp(-_DB_60 * t / rt60_s)
    ir /= np.sqrt(np.sum(ir * ir))
    if x.size == 0:
        return x.astype(np.float32)
    wet_part = oaconvolve(x, ir)[: x.size]
    return ((1.0 - wet) * x + wet * wet_part).astype(np.float32)


def fade(x: np.ndarray, sample_rate: int, in_s: float = 0.0, out_s: float = 0.0) -> np.ndarray:
    """``x`` with a raised-cosine fade-in over the first ``in_s`` seconds and fade-out over
    the last ``out_s`` seconds (each ramp is shortened to the signal's length)."""
    y = np.array(x, dtype=np.float32)
    for seconds, head in ((in_s, True), (out_s, False)):
        n = min(round(seconds * sample_rate), y.size)
        if n <= 0:
            continue
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
        if head:
            y[:n] *= ramp
        else:
            y[-n:] *= ramp[::-1]
    return y


def _shelf_sos(sample_rate: int, hz: float, db: float, high: bool) -> np.ndarray:
    """One second-order section of a shelving filter (the audio-EQ cookbook's shelves with
    slope 1): ``db`` of gain below (``high=False``) or above ``hz``."""
    a = 10.0 ** (db / 40.0)
    w0 = 2.0 * np.pi * hz / sample_rate
    cos, alpha = np.cos(w0), np.sin(w0) / 2.0 * np.sqrt(2.0)
    k = 2.0 * np.sqrt(a) * alpha
    s = -1.0 if high else 1.0  # the high shelf is the low shelf with the cos terms negated
    b = [a * ((a + 1) - s * (a - 1) * cos + k), s * 2 * a * ((a - 1) - s * (a + 1) * cos),
         a * ((a + 1) - s * (a - 1) * cos - k)]
    den = [(a + 1) + s * (a - 1) * cos + k, -s * 2 * ((a - 1) + s * (a + 1) * cos),
           (a + 1) + s * (a - 1) * cos - k]
    return np.array([[*(np.array(b) / den[0]), 1.0, den[1] / den[0], den[2] / den[0]]])


def shelf_eq(x: np.ndarray, sample_rate: int, low_db: float, high_db: float,
             low_hz: float = 250.0, high_hz: float = 3000.0) -> np.ndarray:
    """``x`` through a low shelf (``low_db`` below about ``low_hz``) and a high shelf
    (``high_db`` above about ``high_hz``): a tone control, as a mixing desk's EQ.
    Frequencies between the two keep their level. Shape ``(n,)`` -> ``(n,)``."""
    if not 0 < low_hz < high_hz < sample_rate / 2:
        raise ValueError(f"shelf_eq: need 0 < low_hz < high_hz < sample_rate / 2, got "
                         f"{low_hz}, {high_hz}, {sample_rate}")
    y = np.asarray(x, dtype=np.float64)
    if y.size == 0 or (low_db == 0.0 and high_db == 0.0):
        return y.astype(np.float32)
    sos = np.concatenate([_shelf_sos(sample_rate, low_hz, low_db, False),
                          _shelf_sos(sample_rate, high_hz, high_db, True)])
    return sosfilt(sos, y).astype(np.float32)


def compress(x: np.ndarray, sample_rate: int, threshold_db: float, ratio: float,
             attack_s: float = 0.01, release_s: float = 0.15,
             hop_s: float = 0.005) -> np.ndarray:
    """``x`` through a feed-forward compressor: where its level (RMS over ``hop_s``
    windows, dBFS) is above ``threshold_db``, the excess is divided by ``ratio``.

    The gain follows the level with a one-pole smoother (``attack_s`` when the gain falls,
    ``release_s`` when it recovers) and is interpolated between windows. No make-up gain:
    a louder passage comes out quieter, a quiet one unchanged. ``ratio`` 1 returns ``x``.
    Shape ``(n,)`` -> ``(n,)``.
    """
    if ratio < 1.0 or attack_s <= 0 or release_s <= 0 or hop_s <= 0:
        raise ValueError(f"compress: need ratio >= 1 and positive times, got {ratio}, "
                         f"{attack_s}, {release_s}, {hop_s}")
    y = np.asarray(x, dtype=np.float64)
    if y.size == 0 or ratio == 1.0:
        return y.astype(np.float32)
    hop = max(1, round(hop_s * sample_rate))
    n_hops = -(-y.size // hop)
    frames = np.zeros(n_hops * hop)
    frames[:y.size] = y
    power = np.mean(frames.reshape(n_hops, hop) ** 2, axis=1)
    level = 10.0 * np.log10(np.maximum(power, 1e-12))
    target = np.minimum(0.0, (threshold_db - level) * (1.0 - 1.0 / ratio))
    attack = np.exp(-hop / (attack_s * sample_rate))
    release = np.exp(-hop / (release_s * sample_rate))
    gain = np.empty(n_hops)
    g = 0.0
    for i, t in enumerate(target.tolist()):
        c = attack if t < g else release
        g = c * g + (1.0 - c) * t
        gain[i] = g
    centres = (np.arange(n_hops) + 0.5) * hop
    per_sample = np.interp(np.arange(y.size), centres, gain)
    return (y * 10.0 ** (per_sample / 20.0)).astype(np.float32)
