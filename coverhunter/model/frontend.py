"""Input normalisation and trainable time down-sampling [II-A].

BatchNorm over the CQT bins replaces CMVN; two 3×3 stride-2 convolutions divide time
(and frequency) by 4, and a linear layer maps the flattened channels×bins to the model width.
"""
from __future__ import annotations

import torch
from torch import nn

from coverhunter.model.masking import MaskedBatchNorm, lengths_to_mask, strided_lengths


class Subsampling(nn.Module):
    """``(B, T, bins)`` log-CQT → ``(B, ceil(ceil(T/2)/2), d_model)``."""

    def __init__(self, n_bins: int, channels: int, d_model: int, dropout: float):
        super().__init__()
        self.norm = MaskedBatchNorm(n_bins)
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        bins_out = (((n_bins + 1) // 2) + 1) // 2
        self.proj = nn.Linear(channels * bins_out, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, T, F); lengths: (B,)
        x = self.norm(x, lengths_to_mask(lengths, x.shape[1])).unsqueeze(1)   # (B, 1, T, F)
        for conv in (self.conv1, self.conv2):
            x = torch.relu(conv(x))                                     # (B, C, T', F')
            lengths = strided_lengths(lengths)
            mask = lengths_to_mask(lengths, x.shape[2])
            x = x * mask[:, None, :, None]                              # zero the padding
        b, c, t, f = x.shape
        x = self.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f))      # (B, T/4, d_model)
        return self.dropout(x), lengths
