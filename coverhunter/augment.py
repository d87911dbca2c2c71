"""On-the-fly feature augmentation [III-B, "pitch"]: roll the CQT along frequency.

A cover is often in another key; in a CQT a key change of k semitones is a shift of k bins
(12 per octave). Rolling each training chunk by a random number of bins teaches the model
that a transposed melody is the same work. Random draws use torch's generator, which the
training checkpoint saves, so resumed runs stay exact.
"""
from __future__ import annotations

import torch


def roll_pitch(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Roll each item of ``x`` ``(B, T, bins)`` by ``shifts[b]`` bins (positive = up in pitch);
    bins that leave one end come back at the other."""
    bins = x.shape[-1]
    source = (torch.arange(bins, device=x.device)[None, :] - shifts[:, None]) % bins  # (B, bins)
    return x.gather(-1, source[:, None, :].expand_as(x))


def random_pitch_roll(x: torch.Tensor, max_bins: int) -> torch.Tensor:
    """Roll each item by a shift drawn uniformly from ``[-max_bins, max_bins]``."""
    if max_bins <= 0:
        return x
    shifts = torch.randint(-max_bins, max_bins + 1, (x.shape[0],))
    return roll_pitch(x, shifts.to(x.device))
