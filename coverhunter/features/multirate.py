"""A multirate constant-Q transform [III-A]: the same bins, hop, centring and scale as the
nnAudio ``CQT1992v2`` front end, at a small fraction of its cost.

A bin of frequency f needs a filter of Q·sr/f samples, so at the full rate the lowest bins
need filters of ~8,000 samples. Here each bin is computed at the lowest sample rate that
still holds it comfortably (below ``PASSBAND`` of that rate's Nyquist frequency): the
signal is halved in rate again and again (a zero-phase low-pass, then every second
sample), and every octave's filters are short. The hop (640 = 2⁷·5 samples) is divided
exactly at each rate, so frame t is centred on sample t·hop at every rate. The top bin
(B8, 7.9 kHz, just under the 8 kHz Nyquist frequency) stays at the full rate.

Each filter is as nnAudio's: a Hann window times a complex exponential, divided by its L1
norm, the magnitude scaled by the square root of the full-rate filter length; the L1
normalisation makes a filter's response to a sinusoid independent of the rate it runs at.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.signal import firwin
from torch import nn
from torch.nn import functional as F

from coverhunter.params import FeatureParams

PASSBAND = 0.8        # a bin runs at a rate whose Nyquist frequency is at least f / PASSBAND
HALFBAND_TAPS = 63    # the low-pass before each halving: cut-off at the new Nyquist frequency
HALVE_BLOCK = 16      # outputs per row of the halving's matrix product (below)
MIN_HALVE = 2048      # shorter signals are halved zero-padded to this length: under ~400 samples
                      # the convolution runs another kernel on some CPUs (AVX-512 here), whose sums
                      # differ in the last bit, and a short recording's features would then depend
                      # on what it is batched with; the outputs kept are the same sums
MAX_HALVINGS = 7      # 640 = 2^7 * 5: the hop stays a whole number of samples


def _kernels(freqs: np.ndarray, sr: float, q: float) -> np.ndarray:
    """Centred complex filters ``(n, width)`` at rate ``sr``: Hann × exp(iωn), L1-normalised."""
    lengths = np.ceil(q * sr / freqs).astype(int)
    width = int(lengths.max()) | 1                       # odd: a true centre sample
    out = np.zeros((len(freqs), width), dtype=np.complex64)
    for k, (f, n) in enumerate(zip(freqs, lengths)):
        t = np.arange(-(n // 2), n - n // 2)
        sig = np.hanning(n + 2)[1:-1] * np.exp(2j * np.pi * f * t / sr) if n > 1 else np.ones(1, complex)
        out[k, width // 2 - n // 2: width // 2 - n // 2 + n] = sig / np.abs(sig).sum()
    return out


class MultirateCQT(nn.Module):
    """Audio ``(batch, samples)`` → CQT magnitude ``(batch, bins, frames)``, frames =
    samples // hop + 1 (nnAudio's layout and scale)."""

    def __init__(self, p: FeatureParams):
        super().__init__()
        sr, hop = p.sample_rate, p.hop_length
        freqs = p.fmin * 2.0 ** (np.arange(p.n_bins) / p.bins_per_octave)
        if freqs[-1] >= sr / 2:
            raise ValueError(f"features: the top bin ({freqs[-1]:.0f} Hz) is above the Nyquist frequency")
        q = 1.0 / (2 ** (1.0 / p.bins_per_octave) - 1)
        self.hop = hop
        # halvings per bin: as many as keep the bin inside the pass band and the hop whole
        max_d = min(MAX_HALVINGS, (hop & -hop).bit_length() - 1)
        halvings = np.zeros(p.n_bins, dtype=int)
        for d in range(1, max_d + 1):
            halvings[freqs <= PASSBAND * sr / 2 ** (d + 1)] = d
        self.groups = []                                  # (halvings, bin indices) per rate
        for i, d in enumerate(sorted(set(halvings.tolist()))):
            bins = np.flatnonzero(halvings == d)
            k = _kernels(freqs[bins], sr / 2 ** d, q)
            self.register_buffer(f"real{i}", torch.from_numpy(k.real.copy())[:, None])
            self.register_buffer(f"imag{i}", torch.from_numpy(k.imag.copy())[:, None])
            self.groups.append((d, torch.from_numpy(bins)))
        scale = np.sqrt(np.ceil(q * sr / freqs))           # nnAudio's "librosa" scale
        self.register_buffer("scale", torch.from_numpy(scale.astype(np.float32))[:, None])
        # The low-pass-and-halve as one strided convolution with HALVE_BLOCK output channels:
        # channel j holds the filter shifted by 2j samples, so one step of 2·HALVE_BLOCK input
        # samples yields HALVE_BLOCK consecutive outputs. The same sums as a single-channel
        # stride-2 convolution, but a dense matrix product: ~12x faster on a CPU.
        lowpass = firwin(HALFBAND_TAPS, 0.5, window=("kaiser", 8.0)).astype(np.float32)
        shifted = np.zeros((HALVE_BLOCK, 1, 2 * HALVE_BLOCK + HALFBAND_TAPS - 2), np.float32)
        for j in range(HALVE_BLOCK):
            shifted[j, 0, 2 * j: 2 * j + HALFBAND_TAPS] = lowpass
        self.register_buffer("halve_kernel", torch.from_numpy(shifted))
        self.n_bins = p.n_bins
        # Zeros appended before halving: at every rate a signal's low-passed tail (under
        # HALFBAND_TAPS/2 samples of that rate) is kept, not cut at the signal's end, so a
        # recording's last frames are the same alone as zero-padded in a longer batch.
        self.tail = (HALFBAND_TAPS // 2 + 1) << int(halvings.max())

    def _halve(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 1, n) → (B, 1, ceil(n / 2)), zero-phase: output m is the filter centred on input 2m
        n_out = (x.shape[-1] + 1) // 2
        if x.shape[-1] < MIN_HALVE:                 # zeros, as the right padding below: n_out unchanged
            x = F.pad(x, (0, MIN_HALVE - x.shape[-1]))
        blocks = -(-((x.shape[-1] + 1) // 2) // HALVE_BLOCK)
        right = 2 * HALVE_BLOCK * (blocks - 1) + self.halve_kernel.shape[-1] - x.shape[-1] - HALFBAND_TAPS // 2
        y = F.conv1d(F.pad(x, (HALFBAND_TAPS // 2, right)), self.halve_kernel, stride=2 * HALVE_BLOCK)
        return y.transpose(1, 2).reshape(x.shape[0], 1, -1)[..., :n_out]      # (B, HALVE_BLOCK, blocks) → (B, 1, n_out)

    @torch.no_grad()
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = F.pad(audio.float(), (0, self.tail))[:, None]   # (B, 1, n + tail)
        n_frames = audio.shape[-1] // self.hop + 1
        out = audio.new_zeros(audio.shape[0], self.n_bins, n_frames)
        level = 0
        for i, (d, bins) in enumerate(self.groups):
            while level < d:
                x = self._halve(x)
                level += 1
            real, imag = getattr(self, f"real{i}"), getattr(self, f"imag{i}")
            width, hop = real.shape[-1], self.hop >> d
            # centre: frame t's filter is centred on sample t·hop (zero padding outside)
            xp = F.pad(x, (width // 2, width // 2 + hop))
            re = F.conv1d(xp, real, stride=hop)[..., :n_frames]
            im = F.conv1d(xp, imag, stride=hop)[..., :n_frames]
            out[:, bins] = torch.sqrt(re ** 2 + im ** 2)
        return out * self.scale
