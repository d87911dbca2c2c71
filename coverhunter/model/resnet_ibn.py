"""The paper's baseline backbone: ResNet-IBN 50 [Table II, III-D; ref. 23, as in ByteCover].

A ResNet-50-style network (bottleneck blocks of expansion 4, ``model.resnet_layers`` blocks
per stage, widths ``model.resnet_width`` × 1, 2, 4, 8) with IBN-a (Pan & Tang, 2018): in the
blocks of the first three stages the first 1×1 convolution's output is split, half
InstanceNorm (affine) and half BatchNorm; the last stage uses BatchNorm only. It reads the
log-CQT as a 1-channel image ``(B, 1, T, bins)``, after the same input normalisation as the
Conformer path (frame averaging, per-chunk mean removal, BatchNorm over bins: frontend.py).

Strides. Time is divided by 4 exactly as the Conformer's down-sampling does: the stem's
7×7 stride-2 convolution and its 3×3 stride-2 max-pool stride both axes; the stages then
stride (1, 2), i.e. frequency only. So the pooling sees the same frame rate with either
backbone (15 s at frame_pool 3 → 32 frames; an all-axes ResNet stride of 32 would leave 4,
too few for attentive pooling over time), while frequency shrinks by 32 (96 bins → 3) as in
an ordinary ResNet. Frequency is then averaged out (as ByteCover pools over both axes) and a
linear layer maps the ``4 × 8 × width`` channels to ``model.d_model``, so the same time
pooling, bottleneck and classifier apply unchanged to a ``(B, T/4, d_model)`` sequence.

Padding. Every norm takes the frame mask: statistics over valid frames only, padded frames
set to 0. A padded item then gives the same valid outputs as the item alone, because every
convolution sees zeros beyond an item's end either way (its own zero padding, or the
batch's masked frames); the max-pool follows a ReLU, so a zero there equals its -inf pad.
A batch without padding takes torch's fused norms.
"""
from __future__ import annotations

import torch
from torch import nn

from coverhunter.model.frontend import check_input_norm, normalise_input
from coverhunter.model.masking import MaskedBatchNorm, lengths_to_mask, strided_lengths
from coverhunter.params import ModelParams

# Standard ResNet-50 / IBN-Net-a architecture constants.
EXPANSION = 4             # a bottleneck's output channels = 4 × its inner width
STEM_KERNEL = 7           # stem convolution 7×7, stride 2, padding 3
STEM_STRIDE = 2           # stem convolution and max-pool stride, both axes
POOL_KERNEL = 3           # stem max-pool 3×3, stride 2, padding 1
BLOCK_KERNEL = 3          # a bottleneck's middle convolution 3×3, padding 1
STAGE_STRIDE = 2          # every stage after the first halves the map (here frequency only)
STAGE_WIDTHS = (1, 2, 4, 8)   # stage inner widths, × resnet_width
IBN_STAGES = 3            # IBN-a in the first three stages; the last keeps BatchNorm only
IN_SHARE = 0.5            # IBN-a: InstanceNorm on half the channels of the first 1×1 conv


def frame_mask(lengths: torch.Tensor, frames: int, dtype: torch.dtype) -> torch.Tensor:
    """``(B,)`` lengths → ``(B, 1, frames, 1)`` 0/1 mask for a ``(B, C, T, F)`` map."""
    return lengths_to_mask(lengths, frames)[:, None, :, None].to(dtype)


def masked_moments(x: torch.Tensor, mask: torch.Tensor, dims: tuple[int, ...]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, biased variance and count of ``x`` ``(B, C, T, F)`` over ``dims``, valid
    frames only (``mask`` ``(B, 1, T, 1)``); mean and variance keep ``dims`` as size 1."""
    w = mask.expand(-1, 1, -1, x.shape[3])                          # (B, 1, T, F)
    n = w.sum(dims, keepdim=True).clamp_min(1.0)
    mean = (x * w).sum(dims, keepdim=True) / n
    var = ((x - mean).pow(2) * w).sum(dims, keepdim=True) / n
    return mean, var, n


def normalise(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
              norm: nn.BatchNorm2d | nn.InstanceNorm2d, mask: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps)``, then the norm's per-channel scale and shift;
    padded frames 0. ``x`` ``(B, C, T, F)``."""
    y = (x - mean) * torch.rsqrt(var + norm.eps)
    return (y * norm.weight[:, None, None] + norm.bias[:, None, None]) * mask


class MaskedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics skip padded frames; padding comes out as 0.
    ``mask`` None (no padding in the batch) is the plain, fused BatchNorm2d."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, C, T, F); mask: (B, 1, T, 1) or None
        if mask is None:
            return super().forward(x)
        if not self.training:
            return super().forward(x) * mask
        x32 = x.float()
        mean, var, n = masked_moments(x32, mask, (0, 2, 3))           # (1, C, 1, 1) each
        with torch.no_grad():
            n = n.flatten()[0]
            self.running_mean.lerp_(mean.flatten(), self.momentum)
            self.running_var.lerp_(var.flatten() * n / (n - 1).clamp_min(1.0), self.momentum)
            self.num_batches_tracked += 1
        return normalise(x32, mean, var, self, mask).to(x.dtype)


class MaskedInstanceNorm2d(nn.InstanceNorm2d):
    """Affine InstanceNorm2d: each item's and channel's statistics over its valid frames
    (all bins); padding comes out as 0."""

    def __init__(self, channels: int):
        super().__init__(channels, affine=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, C, T, F); mask: (B, 1, T, 1) or None
        if mask is None:
            return super().forward(x)
        x32 = x.float()
        mean, var, _ = masked_moments(x32, mask, (2, 3))               # (B, C, 1, 1) each
        return normalise(x32, mean, var, self, mask).to(x.dtype)


class IBNNorm(nn.Module):
    """IBN-a: InstanceNorm on the first ``IN_SHARE`` of the channels, BatchNorm on the rest."""

    def __init__(self, channels: int):
        super().__init__()
        self.split = (int(channels * IN_SHARE), channels - int(channels * IN_SHARE))
        self.inorm = MaskedInstanceNorm2d(self.split[0])
        self.bnorm = MaskedBatchNorm2d(self.split[1])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        a, b = x.split(self.split, dim=1)                               # (B, C/2, T, F) each
        return torch.cat([self.inorm(a, mask), self.bnorm(b, mask)], dim=1)


class Shortcut(nn.Module):
    """Projection shortcut: 1×1 convolution (frequency stride) + BatchNorm."""

    def __init__(self, c_in: int, c_out: int, freq_stride: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1, stride=(1, freq_stride), bias=False)
        self.norm = MaskedBatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.norm(self.conv(x), mask)                           # (B, C_out, T, F/s)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (frequency stride) → 1×1 expand ×EXPANSION, plus the shortcut;
    IBN-a after the first 1×1 when ``ibn``."""

    def __init__(self, c_in: int, width: int, freq_stride: int, ibn: bool):
        super().__init__()
        c_out = width * EXPANSION
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.norm1 = IBNNorm(width) if ibn else MaskedBatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, BLOCK_KERNEL, stride=(1, freq_stride),
                               padding=BLOCK_KERNEL // 2, bias=False)
        self.norm2 = MaskedBatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.norm3 = MaskedBatchNorm2d(c_out)
        self.shortcut = (Shortcut(c_in, c_out, freq_stride)
                         if c_in != c_out or freq_stride != 1 else None)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # x: (B, C_in, T, F) → (B, 4·width, T, F/stride)
        y = torch.relu(self.norm1(self.conv1(x), mask))
        y = torch.relu(self.norm2(self.conv2(y), mask))
        y = self.norm3(self.conv3(y), mask)
        skip = x if self.shortcut is None else self.shortcut(x, mask)
        return torch.relu(y + skip)


class Stem(nn.Module):
    """7×7 stride-2 convolution, BatchNorm, ReLU, 3×3 stride-2 max-pool: time and
    frequency ÷ 4, valid frames ceil(ceil(n/2)/2)."""

    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv2d(1, width, STEM_KERNEL, stride=STEM_STRIDE,
                              padding=STEM_KERNEL // 2, bias=False)
        self.norm = MaskedBatchNorm2d(width)
        self.pool = nn.MaxPool2d(POOL_KERNEL, stride=STEM_STRIDE, padding=POOL_KERNEL // 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, padded: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, 1, T, F), padding 0
        x = self.conv(x)                                               # (B, w, T/2, F/2)
        lengths = strided_lengths(lengths)    # 7×7, stride 2, pad 3 also gives ceil(n/2)
        mask = frame_mask(lengths, x.shape[2], x.dtype) if padded else None
        x = torch.relu(self.norm(x, mask))                             # ≥ 0, padding 0
        x = self.pool(x)                                               # (B, w, T/4, F/4)
        lengths = strided_lengths(lengths)
        if padded:
            x = x * frame_mask(lengths, x.shape[2], x.dtype)
        return x, lengths


class ResNetIBN(nn.Module):
    """The ResNet-IBN body: ``(B, 1, T, F)`` → ``(B, 4·8·width, ceil(ceil(T/2)/2), F/32)``."""

    def __init__(self, width: int, layers: list[int]):
        super().__init__()
        if width < 2:
            raise ValueError(f"model.resnet_width must be >= 2 (IBN splits channels), got {width}")
        self.stem = Stem(width)
        blocks, c_in = [], width
        for stage, (mult, n_blocks) in enumerate(zip(STAGE_WIDTHS, layers)):
            inner = width * mult
            for i in range(n_blocks):
                stride = STAGE_STRIDE if stage > 0 and i == 0 else 1
                blocks.append(Bottleneck(c_in, inner, stride, ibn=stage < IBN_STAGES))
                c_in = inner * EXPANSION
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = c_in

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, 1, T, F); lengths: (B,)
        padded = bool((lengths < x.shape[2]).any())
        if padded:
            x = x * frame_mask(lengths, x.shape[2], x.dtype)
        x, lengths = self.stem(x, lengths, padded)                     # (B, w, T/4, F/4)
        mask = frame_mask(lengths, x.shape[2], x.dtype) if padded else None
        for block in self.blocks:
            x = block(x, mask)                                         # time kept, F ÷ 2 per stage
        return x, lengths                                              # (B, 32·w, T/4, F/32)


class ResNetIBNEncoder(nn.Module):
    """``(B, T, bins)`` log-CQT → ``(B, ceil(ceil(ceil(T/k)/2)/2), d_model)`` frames: the
    input normalisation of the Conformer path, the ResNet-IBN body, the mean over frequency
    and a linear map to ``model.d_model``."""

    def __init__(self, n_bins: int, p: ModelParams):
        super().__init__()
        check_input_norm(p.frame_pool, p.input_norm)
        self.frame_pool, self.input_norm = p.frame_pool, p.input_norm
        self.norm = MaskedBatchNorm(n_bins)
        self.body = ResNetIBN(p.resnet_width, p.resnet_layers)
        self.proj = nn.Linear(self.body.out_channels, p.d_model)
        self.dropout = nn.Dropout(p.dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, T, F); lengths: (B,)
        x, lengths = normalise_input(x, lengths, self.frame_pool, self.input_norm, self.norm)
        x = x.unsqueeze(1)                                              # (B, 1, T/k, F)
        x, lengths = self.body(x, lengths)                              # (B, C, T', F')
        x = self.proj(x.mean(dim=3).transpose(1, 2))                    # (B, T', d_model)
        return self.dropout(x), lengths
