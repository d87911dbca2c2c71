"""Conformer blocks [II-A], after Gulati et al. (2020).

Each block is macaron-shaped: half-step feed-forward, multi-head self-attention with
relative sinusoidal positions (Transformer-XL style), a depthwise-convolution module,
a second half-step feed-forward, then LayerNorm. All of them respect a padding mask.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from coverhunter.model.masking import MaskedBatchNorm


class FeedForward(nn.Module):
    """LayerNorm → Linear(d, ff) → Swish → Linear(ff, d), with dropout."""

    def __init__(self, d_model: int, ff_dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d_model), nn.Linear(d_model, ff_dim), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(ff_dim, d_model), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, T, d)


def relative_positions(length: int, d_model: int, device: torch.device) -> torch.Tensor:
    """Sinusoidal encodings of the offsets ``length-1 … -(length-1)``: ``(2T-1, d)``."""
    offsets = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float32)
    freqs = torch.exp(torch.arange(0, d_model, 2, device=device, dtype=torch.float32)
                      * (-math.log(10000.0) / d_model))
    angles = offsets[:, None] * freqs[None, :]                          # (2T-1, d/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (2T-1, d)


class RelPositionAttention(nn.Module):
    """Multi-head self-attention whose scores add a content term and a relative-position
    term: ``(q + u)·k_j + (q + v)·W p_{i-j}``."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"model.d_model={d_model} is not divisible by model.n_heads={n_heads}")
        self.h, self.dk = n_heads, d_model // n_heads
        self.norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.pos = nn.Linear(d_model, d_model, bias=False)
        self.u = nn.Parameter(torch.zeros(n_heads, self.dk))
        self.v = nn.Parameter(torch.zeros(n_heads, self.dk))
        self.out = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, T, d); mask: (B, T)
        b, t, d = x.shape
        h, dk = self.h, self.dk
        q, k, v = self.qkv(self.norm(x)).view(b, t, 3, h, dk).unbind(2)  # (B, T, H, dk)
        p = self.pos(relative_positions(t, d, x.device).to(x.dtype))      # (2T-1, d)
        content = (q + self.u).transpose(1, 2) @ k.permute(0, 2, 3, 1)   # (B, H, T, T)
        # Plain matmuls (ONNX Runtime's Einsum is slow); the offsets' one in torch.einsum's
        # layout (heads batched, B·T rows), which sums gradients in the order the shipped
        # models were trained with
        qv = (q + self.v).permute(2, 0, 1, 3).reshape(h, b * t, dk)          # (H, B·T, dk)
        position = torch.bmm(qv, p.view(2 * t - 1, h, dk).permute(1, 2, 0))  # (H, B·T, 2T-1)
        position = position.view(h, b, t, 2 * t - 1).transpose(0, 1)          # (B, H, T, 2T-1)
        # Relative shift: row i needs columns t-1-i+j (offset i-j). Append a zero column
        # (rows of 2T) and read the block flat from element t-1 in rows of 2T-1: row i then
        # starts at i·2T + t-1-i, its own column t-1-i.
        flat = nn.functional.pad(position, (0, 1)).reshape(b, h, 2 * t * t)
        position = flat[..., t - 1: t - 1 + t * (2 * t - 1)].reshape(b, h, t, 2 * t - 1)[..., :t]
        scores = (content + position) / math.sqrt(dk)
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        attn = self.drop(scores.softmax(dim=-1))
        y = (attn @ v.transpose(1, 2)).transpose(1, 2).reshape(b, t, d)    # (B, T, d)
        return self.drop(self.out(y))


class ConvModule(nn.Module):
    """LayerNorm → pointwise (2d) → GLU → depthwise conv → BatchNorm → Swish → pointwise."""

    def __init__(self, d_model: int, kernel: int, dropout: float):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"model.conv_kernel must be odd, got {kernel}")
        self.norm = nn.LayerNorm(d_model)
        self.pw1 = nn.Linear(d_model, 2 * d_model)
        self.dw = nn.Conv1d(d_model, d_model, kernel, padding=kernel // 2, groups=d_model)
        self.bn = MaskedBatchNorm(d_model)
        self.pw2 = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, T, d); mask: (B, T)
        y = nn.functional.glu(self.pw1(self.norm(x)), dim=-1)           # (B, T, d)
        y = y.masked_fill(~mask[..., None], 0.0)                         # padding stays zero
        y = self.dw(y.transpose(1, 2)).transpose(1, 2)                   # (B, T, d)
        y = nn.functional.silu(self.bn(y, mask))
        return self.drop(self.pw2(y))


class ConformerBlock(nn.Module):
    """x + ½FF → + MHSA → + Conv → + ½FF → LayerNorm."""

    def __init__(self, d_model: int, ff_dim: int, n_heads: int, kernel: int, dropout: float):
        super().__init__()
        self.ff1 = FeedForward(d_model, ff_dim, dropout)
        self.attn = RelPositionAttention(d_model, n_heads, dropout)
        self.conv = ConvModule(d_model, kernel, dropout)
        self.ff2 = FeedForward(d_model, ff_dim, dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, mask)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x).masked_fill(~mask[..., None], 0.0)          # (B, T, d)
