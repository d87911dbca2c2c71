"""Input normalisation and trainable time down-sampling [II-A].

Optionally the input is first averaged over every ``frame_pool`` frames (the authors'
released code averages 3: 25 → 8.3 frames/s) and each bin's mean over the chunk is
subtracted (``input_norm: chunk_mean``: it removes the recording's long-term spectral
colour, i.e. instrument, room and noise, and keeps how each bin moves, i.e. the notes).
Then BatchNorm over the CQT bins (the paper's replacement of CMVN); two 3×3 stride-2
convolutions divide time (and frequency) by 4, and a linear layer maps the flattened
channels×bins to the model width.
"""
from __future__ import annotations

import torch
from torch import nn

from coverhunter.model.masking import MaskedBatchNorm, lengths_to_mask, strided_lengths

INPUT_NORMS = ("none", "chunk_mean")


def pool_frames(x: torch.Tensor, lengths: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Average every ``k`` valid frames: ``(B, T, F)`` → ``(B, ceil(T/k), F)``, lengths
    ``ceil(n/k)``; a last, partial window averages only its valid frames."""
    if k == 1:
        return x, lengths
    mask = lengths_to_mask(lengths, x.shape[1])[..., None].to(x.dtype)     # (B, T, 1)
    pad = -x.shape[1] % k
    total = nn.functional.pad(x * mask, (0, 0, 0, pad))                    # (B, T + pad, F)
    count = nn.functional.pad(mask, (0, 0, 0, pad))
    b, t, f = total.shape
    total = total.reshape(b, t // k, k, f).sum(2)                          # (B, T/k, F)
    count = count.reshape(b, t // k, k, 1).sum(2)
    return total / count.clamp_min(1), (lengths + k - 1) // k


def subtract_chunk_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each item's per-bin mean over its valid frames removed: ``(B, T, F)``, padding 0."""
    w = mask[..., None].to(x.dtype)                                          # (B, T, 1)
    mean = (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1)  # (B, 1, F)
    return (x - mean) * w


def check_input_norm(frame_pool: int, input_norm: str) -> None:
    if input_norm not in INPUT_NORMS:
        raise ValueError(f"model.input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
    if frame_pool < 1:
        raise ValueError(f"model.frame_pool must be >= 1, got {frame_pool}")


def normalise_input(x: torch.Tensor, lengths: torch.Tensor, frame_pool: int, input_norm: str,
                    norm: MaskedBatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """The input normalisation every backbone starts with: frame averaging, the optional
    chunk-mean removal, then BatchNorm over the bins (``norm``).
    ``(B, T, F)`` → ``(B, ceil(T/k), F)`` and the new lengths."""
    x, lengths = pool_frames(x, lengths, frame_pool)                     # (B, T/k, F)
    mask = lengths_to_mask(lengths, x.shape[1])
    if input_norm == "chunk_mean":
        x = subtract_chunk_mean(x, mask)
    return norm(x, mask), lengths


class Subsampling(nn.Module):
    """``(B, T, bins)`` log-CQT → ``(B, ceil(ceil(ceil(T/k)/2)/2), d_model)``."""

    def __init__(self, n_bins: int, channels: int, d_model: int, dropout: float,
                 frame_pool: int = 1, input_norm: str = "none"):
        super().__init__()
        check_input_norm(frame_pool, input_norm)
        self.frame_pool, self.input_norm = frame_pool, input_norm
        self.norm = MaskedBatchNorm(n_bins)
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        bins_out = (((n_bins + 1) // 2) + 1) // 2
        self.proj = nn.Linear(channels * bins_out, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, T, F); lengths: (B,)
        x, lengths = normalise_input(x, lengths, self.frame_pool, self.input_norm, self.norm)
        x = x.unsqueeze(1)                                              # (B, 1, T/k, F)
        for conv in (self.conv1, self.conv2):
            x = torch.relu(conv(x))                                     # (B, C, T', F')
            lengths = strided_lengths(lengths)
            mask = lengths_to_mask(lengths, x.shape[2])
            x = x * mask[:, None, :, None]                              # zero the padding
        b, c, t, f = x.shape
        x = self.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f))      # (B, T/4, d_model)
        return self.dropout(x), lengths
