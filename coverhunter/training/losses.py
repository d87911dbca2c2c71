"""The joint loss [II-C, eqs. 1–4].

``L = λ_focal·L_focal + λ_center·L_center + λ_tri·L_triplet``: focal and center loss on the
post-bottleneck embedding, a batch-hard triplet loss on the pre-bottleneck vector. Each term
is a mean over the batch. In data-parallel training the triplet loss mines over the global
batch (every process's vectors: coverhunter.distributed), as one process would.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from coverhunter.distributed import all_rows
from coverhunter.params import LossParams


def inverse_frequency_alpha(class_counts: Sequence[int]) -> torch.Tensor:
    """Per-class α_c ∝ 1 / n_c, scaled so the sample-weighted mean of α is 1:
    α_c = N / (C · n_c) with N samples in C classes."""
    counts = torch.as_tensor(class_counts, dtype=torch.float32)
    if (counts <= 0).any():
        raise ValueError("every class needs at least one training sample to weight the focal loss")
    return counts.sum() / (len(counts) * counts)


class FocalLoss(nn.Module):
    """Eq. 1: ``-α_y (1 - p_y)^γ log p_y`` averaged over the batch."""

    def __init__(self, alpha: torch.Tensor, gamma: float):
        super().__init__()
        self.register_buffer("alpha", alpha.float())
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # logits: (B, C); labels: (B,)
        log_p = logits.float().log_softmax(dim=-1).gather(1, labels[:, None]).squeeze(1)  # (B,)
        weight = self.alpha[labels] * (1.0 - log_p.exp()).pow(self.gamma)
        return -(weight * log_p).mean()


class CenterLoss(nn.Module):
    """Eq. 2: ``0.5 ‖x - c_y‖²`` averaged over the batch; the class centres are parameters
    learnt by the same optimiser as the network."""

    def __init__(self, n_classes: int, dim: int):
        super().__init__()
        self.centers = nn.Parameter(torch.zeros(n_classes, dim))
        nn.init.normal_(self.centers, std=0.01)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # x: (B, D); labels: (B,)
        return 0.5 * (x.float() - self.centers[labels]).pow(2).sum(dim=1).mean()


def cosine_distances(x: torch.Tensor) -> torch.Tensor:
    """``(B, D)`` → ``(B, B)`` cosine distances ``1 - cos``."""
    unit = nn.functional.normalize(x.float(), dim=-1)
    return 1.0 - unit @ unit.T


def batch_hard_triplet(x: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Eq. 3 with in-batch hard mining: for each anchor the farthest positive and the
    nearest negative (cosine distance), ``max(d_p - d_n + margin, 0)``, averaged over the
    anchors that have both; 0 when none has."""
    d = cosine_distances(x)                                             # (B, B)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=x.device)
    pos, neg = same & ~eye, ~same
    valid = pos.any(dim=1) & neg.any(dim=1)
    if not valid.any():
        return d.new_zeros(())
    d_p = d.masked_fill(~pos, float("-inf")).amax(dim=1)
    d_n = d.masked_fill(~neg, float("inf")).amin(dim=1)
    return (d_p - d_n + margin).clamp_min(0.0)[valid].mean()


class LossTerms(NamedTuple):
    total: torch.Tensor
    focal: torch.Tensor
    center: torch.Tensor
    triplet: torch.Tensor


class CoverHunterLoss(nn.Module):
    """Eq. 4, the weighted sum of the three terms."""

    def __init__(self, p: LossParams, class_counts: Sequence[int], embedding_dim: int):
        super().__init__()
        self.p = p
        alpha = (inverse_frequency_alpha(class_counts) if p.focal_alpha == "inverse_frequency"
                 else torch.ones(len(class_counts)))
        self.focal = FocalLoss(alpha, p.focal_gamma)
        self.center = CenterLoss(len(class_counts), embedding_dim)

    def forward(self, pre: torch.Tensor, embedding: torch.Tensor, logits: torch.Tensor,
                labels: torch.Tensor) -> LossTerms:
        focal = self.focal(logits, labels)
        center = self.center(embedding, labels)
        triplet = batch_hard_triplet(all_rows(pre), all_rows(labels), self.p.triplet_margin)
        total = (self.p.focal_weight * focal + self.p.center_weight * center
                 + self.p.triplet_weight * triplet)
        return LossTerms(total, focal, center, triplet)
