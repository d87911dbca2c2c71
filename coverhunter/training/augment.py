"""On-the-fly feature augmentation [III-B, "pitch", "speed" and "mask"]: CQT roll, tempo
change and SpecAugment masks.

A cover is often in another key; in a CQT a key change of k semitones is a shift of k bins
(12 per octave). Rolling training chunks (each with probability ``pitch_roll_prob``) by a
random number of bins teaches the model that a transposed melody is the same work.
Masking random rectangles of the spectrum (whole
frames, whole bins; SpecAugment, the paper's [21]) teaches it not to rely on any one
moment or register. A tempo change with the pitch kept (the paper's speed trick) moves a
CQT's frames in time only, so it is done on stored frames: a chunk ``rate`` times longer is
resampled to the chunk's length (:func:`stretch_time`; the batch builder cuts it).
Features are ``(B, T, bins)`` with valid lengths ``(B,)`` in frames;
masks stay inside each item's valid frames, never in its padding. Random draws use
torch's global generator (which the training checkpoint saves, so resumed runs stay
exact) unless a ``torch.Generator`` is passed.
"""
from __future__ import annotations

import numpy as np
import torch

from coverhunter.params import AugmentParams

__all__ = ["FeatureAugment", "apply_masks", "draw_masks", "overlay_db", "random_pitch_roll",
           "roll_pitch", "stretch_time"]


def stretch_time(x: np.ndarray, rate: float, max_frames: int | None = None) -> np.ndarray:
    """``x`` ``(T, bins)`` played ``rate`` times faster: ``(round(T / rate), bins)`` frames,
    frame ``j`` linearly interpolated at source position ``j * rate`` (at most
    ``max_frames`` frames)."""
    n = max(1, int(round(len(x) / rate)))
    if max_frames is not None:
        n = min(n, max_frames)
    pos = np.minimum(np.arange(n) * rate, len(x) - 1)                  # (n,) source frame
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(x) - 1)
    w = (pos - lo).astype(np.float32)[:, None]
    v = np.asarray(x, dtype=np.float32)
    return (1 - w) * v[lo] + w * v[hi]


def overlay_db(x: np.ndarray, other: np.ndarray, snr_db: float) -> np.ndarray:
    """``x`` ``(T, bins)`` with ``other`` ``(T', bins)`` lowered by ``snr_db`` and mixed in
    (both log-CQTs on the stored scale, dB re their recording's peak, so two chunks from
    their recordings' loudest moments are ``snr_db`` apart): the two powers added bin by bin,
    frame ``t`` of ``other`` under frame ``t`` of ``x`` (repeated from its start where it is
    shorter), then in dB re the mixture's peak with the floor of ``x`` kept. Returns
    ``(T, bins)`` float32."""
    floor = float(x.min())
    under = np.resize(np.asarray(other, np.float32), (len(x), x.shape[1])) - snr_db
    mixed = 10.0 * np.log10(10.0 ** (x / 10.0) + 10.0 ** (under / 10.0))
    return np.maximum(mixed - mixed.max(), floor).astype(np.float32)


def roll_pitch(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Roll each item of ``x`` ``(B, T, bins)`` by ``shifts[b]`` bins (positive = up in pitch);
    bins that leave one end come back at the other."""
    bins = x.shape[-1]
    source = (torch.arange(bins, device=x.device)[None, :] - shifts[:, None]) % bins  # (B, bins)
    return x.gather(-1, source[:, None, :].expand_as(x))


def random_pitch_roll(x: torch.Tensor, max_bins: int, prob: float = 1.0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Roll each item, with probability ``prob``, by a shift drawn uniformly from
    ``[-max_bins, max_bins]``."""
    if max_bins <= 0 or prob <= 0:
        return x
    shifts = torch.randint(-max_bins, max_bins + 1, (x.shape[0],), generator=generator)  # (B,)
    if prob < 1:
        shifts = shifts * (torch.rand(x.shape[0], generator=generator) < prob)
    return roll_pitch(x, shifts.to(x.device))


def _spans(limit: torch.Tensor, count: int, max_width: int,
           generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` spans per item: width uniform in ``[1, max_width]`` clipped to ``limit[b]``,
    start uniform so that the span ends by ``limit[b]``. Returns start, width ``(B, count)``."""
    u = torch.rand(len(limit), count, 2, generator=generator)                    # (B, K, 2)
    width = ((u[..., 0] * max_width).long() + 1).clamp_max(max_width)
    width = torch.minimum(width, limit[:, None])                                  # (B, K)
    start = (u[..., 1] * (limit[:, None] - width + 1)).long()
    return torch.minimum(start, limit[:, None] - width), width


def _cover(start: torch.Tensor, width: torch.Tensor, size: int) -> torch.Tensor:
    """Positions ``(B, size)`` inside any of the spans ``(B, K)``."""
    idx = torch.arange(size)[None, None, :]                                       # (1, 1, size)
    inside = (idx >= start[..., None]) & (idx < (start + width)[..., None])       # (B, K, size)
    return inside.any(dim=1)


def draw_masks(lengths: torch.Tensor, n_frames: int, n_bins: int, prob: float,
               time_masks: int, time_mask_max_frames: int, freq_masks: int,
               freq_mask_max_bins: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """SpecAugment masks ``(B, n_frames, n_bins)`` bool (on the CPU), True = masked.

    Each item gets, with probability ``prob``, ``time_masks`` spans of whole frames and
    ``freq_masks`` spans of whole bins (over its valid frames only); masks may overlap.
    Nothing beyond ``lengths[b]`` frames is ever masked.
    """
    lengths = lengths.detach().cpu().long().clamp(0, n_frames)                   # (B,)
    batch = len(lengths)
    chosen = torch.rand(batch, generator=generator) < prob                        # (B,)
    frames = torch.zeros(batch, n_frames, dtype=torch.bool)
    bins = torch.zeros(batch, n_bins, dtype=torch.bool)
    if time_masks > 0 and time_mask_max_frames > 0:
        frames = _cover(*_spans(lengths, time_masks, time_mask_max_frames, generator), n_frames)
    if freq_masks > 0 and freq_mask_max_bins > 0:
        full = torch.full_like(lengths, n_bins)
        bins = _cover(*_spans(full, freq_masks, freq_mask_max_bins, generator), n_bins)
    valid = torch.arange(n_frames)[None, :] < lengths[:, None]                   # (B, T)
    mask = frames[:, :, None] | bins[:, None, :]                                  # (B, T, bins)
    return mask & valid[:, :, None] & chosen[:, None, None]


def apply_masks(x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor, fill: str) -> torch.Tensor:
    """``x`` ``(B, T, bins)`` with ``mask`` set to each item's ``min`` or ``mean`` over its
    valid frames (``min`` of a log-CQT is silence, ``-features.top_db``)."""
    valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]
    v = x.float()
    if fill == "min":
        value = v.masked_fill(~valid[..., None], float("inf")).amin(dim=(1, 2))  # (B,)
    elif fill == "mean":
        total = v.masked_fill(~valid[..., None], 0.0).sum(dim=(1, 2))
        value = total / (valid.sum(dim=1) * x.shape[2]).clamp_min(1)             # (B,)
    else:
        raise ValueError(f"augment.mask_fill must be 'min' or 'mean', got {fill!r}")
    value = value.to(x.dtype)[:, None, None].expand_as(x)
    return torch.where(mask.to(x.device), value, x)


class FeatureAugment:
    """Pitch roll (probability ``p.pitch_roll_prob``, up to ±``pitch_roll_bins`` bins, the
    range being ``train.pitch_roll_bins``), then masks (``p.mask_prob``, counts and widths
    from ``p``), on a batch ``x`` ``(B, T, bins)`` with lengths ``(B,)``."""

    def __init__(self, p: AugmentParams, pitch_roll_bins: int):
        self.p = p
        self.pitch_roll_bins = pitch_roll_bins

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        p = self.p
        x = random_pitch_roll(x, self.pitch_roll_bins, p.pitch_roll_prob, generator)
        if p.mask_prob <= 0:
            return x
        mask = draw_masks(lengths, x.shape[1], x.shape[2], p.mask_prob, p.time_masks,
                          p.time_mask_max_frames, p.freq_masks, p.freq_mask_max_bins, generator)
        return apply_masks(x, mask, lengths, p.mask_fill)
