"""The bottleneck between time pooling and the classifier [II-A, II-C].

The paper's text says "a simple linear bottleneck"; the authors' released code puts a
BatchNorm after it with a frozen bias and feeds the classifier the normalised vector: the
BNNeck of the "bag of tricks" for re-identification (the paper's [21]). Without the
BatchNorm, a component shared by every chunk grows fastest in Adam's first steps and the
bias-free classifier cannot remove it, so all chunk vectors collapse onto one direction
for hundreds of steps (docs/results.md: "What made the model learn"). The BatchNorm centres each
embedding dimension over the batch, which removes that shared component.
"""
from __future__ import annotations

import torch
from torch import nn

from coverhunter import distributed
from coverhunter.model.masking import batch_moments


class BNNeck(nn.Module):
    """``(B, pool_dim)`` → ``(B, embedding_dim)``: linear bottleneck, then BatchNorm1d whose
    bias is frozen at 0 (so the embedding stays centred for the cosine ranking)."""

    def __init__(self, pool_dim: int, embedding_dim: int):
        super().__init__()
        self.linear = nn.Linear(pool_dim, embedding_dim, bias=False)  # the BatchNorm centres
        self.norm = nn.BatchNorm1d(embedding_dim)
        self.norm.bias.requires_grad_(False)
        self.out_features = embedding_dim

    def forward(self, pre: torch.Tensor) -> torch.Tensor:
        x = self.linear(pre)                                     # (B, embedding_dim)
        if not (self.training and distributed.active()):
            return self.norm(x)
        # data-parallel training: the statistics of every process's batch, as BatchNorm1d's
        bn = self.norm
        mean, var = batch_moments(x, x.new_ones(len(x), 1), (0,), bn.running_mean, bn.running_var, bn.momentum)
        with torch.no_grad():
            bn.num_batches_tracked += 1
        return (x - mean) * torch.rsqrt(var + bn.eps) * bn.weight + bn.bias


def build_neck(kind: str, pool_dim: int, embedding_dim: int) -> nn.Module:
    """``model.neck``: ``bnneck`` or ``linear`` (a plain ``nn.Linear``, whose weight names
    checkpoints saved before the switch existed also use)."""
    if kind == "bnneck":
        return BNNeck(pool_dim, embedding_dim)
    if kind == "linear":
        return nn.Linear(pool_dim, embedding_dim)
    raise ValueError(f"model.neck must be 'bnneck' or 'linear', got {kind!r}")
