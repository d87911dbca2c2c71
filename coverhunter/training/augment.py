"""On-the-fly feature augmentation [III-B, "pitch" and "mask"]: CQT roll and SpecAugment masks.

A cover is often in another key; in a CQT a key change of k semitones is a shift of k bins
(12 per octave). Rolling training chunks (each with probability ``pitch_roll_prob``) by a
random number of bins teaches the model that a transposed melody is the same work.
Masking random rectangles of the spectrum (whole
frames, whole bins; SpecAugment, the paper's [21]) teaches it not to rely on any one
moment or register. Features are ``(B, T, bins)`` with valid lengths ``(B,)`` in frames;
masks stay inside each item's valid frames, never in its padding. Random draws use
torch's global generator (which the training checkpoint saves, so resumed runs stay
exact) unless a ``torch.Generator`` is passed.
"""
from __future__ import annotations

import torch

from coverhunter.params import AugmentParams

__all__ = ["FeatureAugment", "apply_masks", "draw_masks", "random_pitch_roll", "roll_pitch"]


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
