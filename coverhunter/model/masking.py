"""Padding masks and a BatchNorm that ignores padding.

Variable-length chunks are batched with zero padding and a length per item. Every layer
that mixes frames (convolutions, attention, pooling, batch statistics) reads the mask,
so an item's embedding does not depend on how much padding its batch carries.
"""
from __future__ import annotations

import torch
from torch import nn

from coverhunter.distributed import all_sum


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(batch,)`` lengths → ``(batch, max_len)`` bool mask, True on valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def strided_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Valid frames after a kernel-3, stride-2, padding-1 convolution: ceil(n / 2)."""
    return (lengths + 1) // 2


def batch_moments(x: torch.Tensor, weight: torch.Tensor, dims: tuple[int, ...], running_mean: torch.Tensor,
                  running_var: torch.Tensor, momentum: float) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm's training statistics of ``x`` over ``dims``, rows weighted 0/1 by ``weight``
    (broadcast against ``x``), summed over every process's batch in data-parallel training
    (:func:`~coverhunter.distributed.all_sum`). Returns the mean and the biased variance
    ``(C,)``; the running estimates move toward them (the variance unbiased) by ``momentum``."""
    sums = all_sum(torch.cat([(x * weight).sum(dims), weight.sum()[None]]))   # (C + 1,)
    n = sums[-1].clamp_min(2.0)
    mean = sums[:-1] / n                                                     # (C,)
    var = all_sum(((x - mean) ** 2 * weight).sum(dims)) / n                  # (C,)
    with torch.no_grad():
        running_mean.lerp_(mean, momentum)
        running_var.lerp_(var * n / (n - 1), momentum)
    return mean, var


class MaskedBatchNorm(nn.Module):
    """BatchNorm over the last axis of ``(batch, time, channels)``, statistics over valid
    frames only (of every process's batch in data-parallel training: coverhunter.distributed);
    padded frames come out as zeros."""

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, T, C); mask: (B, T)
        x32 = x.float()
        if self.training:
            mean, var = batch_moments(x32, mask[..., None].float(), (0, 1), self.running_mean,
                                      self.running_var, self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        y = (x32 - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return y.masked_fill(~mask[..., None], 0.0).to(x.dtype)
