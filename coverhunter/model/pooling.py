"""Time pooling [II-B]: frame features ``(B, T, D)`` → one chunk vector ``(B, out_dim)``.

``attentive`` is the paper's module: each frame is concatenated with the mean and std of
the whole sequence, an attention layer scores every frame and channel in that global
context, and the attention-weighted mean and std pass through a linear layer. While
training, a random share of the attention logits is masked out so that the pooling cannot
lean on a few frames. ``gem`` and ``mean`` are the ablation baselines of Table II.
"""
from __future__ import annotations

import torch
from torch import nn


def weighted_mean_std(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of ``x`` ``(B, T, D)`` over time under weights ``w`` ``(B, T, 1|D)``
    that sum to 1 over time: two ``(B, D)`` tensors."""
    mean = (w * x).sum(dim=1)
    var = (w * x.pow(2)).sum(dim=1) - mean.pow(2)
    return mean, var.clamp_min(eps).sqrt()


def uniform_weights(mask: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` mask → ``(B, T, 1)`` weights 1/n on valid frames."""
    w = mask[..., None].float()
    return w / w.sum(dim=1, keepdim=True)


class AttentiveTimePooling(nn.Module):
    """Attentive statistics with global context and a random attention mask [II-B]."""

    def __init__(self, d_in: int, hidden: int, out_dim: int, mask_prob: float):
        super().__init__()
        self.mask_prob = mask_prob
        self.score = nn.Sequential(
            nn.Linear(3 * d_in, hidden), nn.Tanh(), nn.Linear(hidden, d_in))
        self.proj = nn.Linear(2 * d_in, out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D); mask: (B, T)
        x = x.float()
        mean, std = weighted_mean_std(x, uniform_weights(mask))           # (B, D) each
        t = x.shape[1]
        context = torch.cat([x, mean[:, None].expand(-1, t, -1),
                             std[:, None].expand(-1, t, -1)], dim=-1)     # (B, T, 3D)
        logits = self.score(context)                                      # (B, T, D)
        keep = mask[..., None].expand_as(logits)
        if self.training and self.mask_prob > 0:
            dropped = keep & (torch.rand_like(logits) >= self.mask_prob)
            # a (batch, channel) that lost every frame keeps its unmasked logits
            keep = torch.where(dropped.any(dim=1, keepdim=True), dropped, keep)
        alpha = logits.masked_fill(~keep, float("-inf")).softmax(dim=1)   # (B, T, D)
        mean_a, std_a = weighted_mean_std(x, alpha)
        return self.proj(torch.cat([mean_a, std_a], dim=-1))              # (B, out_dim)


class GeMPooling(nn.Module):
    """Generalised mean over time with a learnt exponent p (ByteCover), then a linear layer."""

    def __init__(self, d_in: int, out_dim: int, p: float, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps
        self.proj = nn.Linear(d_in, out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        powered = x.float().clamp_min(self.eps).pow(self.p)              # (B, T, D)
        pooled = (uniform_weights(mask) * powered).sum(dim=1).pow(1.0 / self.p)
        return self.proj(pooled)                                          # (B, out_dim)


class MeanPooling(nn.Module):
    """Plain average over valid frames, then a linear layer."""

    def __init__(self, d_in: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(d_in, out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.proj((uniform_weights(mask) * x.float()).sum(dim=1))  # (B, out_dim)


def build_pooling(kind: str, d_in: int, out_dim: int, hidden: int, mask_prob: float,
                  gem_p: float) -> nn.Module:
    """The pooling named by ``model.pooling``."""
    if kind == "attentive":
        return AttentiveTimePooling(d_in, hidden, out_dim, mask_prob)
    if kind == "gem":
        return GeMPooling(d_in, out_dim, gem_p)
    if kind == "mean":
        return MeanPooling(d_in, out_dim)
    raise ValueError(f"model.pooling must be attentive, gem or mean, got {kind!r}")
