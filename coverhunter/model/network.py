"""The assembled network [II-A, II-B, II-C].

log-CQT ``(B, T, bins)`` → BatchNorm + down-sampling → N Conformer blocks → time pooling
→ pre-bottleneck vector (triplet loss) → bottleneck (``model.neck``: linear, or linear +
BatchNorm, neck.py) → embedding (focal and center losses; the retrieval embedding) →
classifier logits (focal loss, training only).

``model.backbone: resnet_ibn`` swaps the down-sampling and Conformer blocks for the
paper's ResNet-IBN 50 baseline [Table II] (resnet_ibn.py); the rest is unchanged.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import NamedTuple

import torch
from torch import nn

from coverhunter.model.conformer import ConformerBlock
from coverhunter.model.frontend import Subsampling
from coverhunter.model.masking import lengths_to_mask
from coverhunter.model.neck import build_neck
from coverhunter.model.pooling import build_pooling
from coverhunter.model.resnet_ibn import ResNetIBNEncoder
from coverhunter.params import ModelParams

# Model keys added after checkpoints were first saved, with the values those checkpoints
# were trained with: the Conformer backbone (the ResNet keys are then unused).
# The neck key came later still: those checkpoints have the paper's linear bottleneck.
LEGACY_MODEL_KEYS = {"backbone": "conformer", "resnet_width": 16, "resnet_layers": [3, 4, 6, 3],
                     "neck": "linear"}


class ModelOutput(NamedTuple):
    pre: torch.Tensor        # (B, pool_dim) before the bottleneck
    embedding: torch.Tensor  # (B, embedding_dim) after the bottleneck
    logits: torch.Tensor     # (B, n_classes), empty when n_classes == 0


class CoverHunterNet(nn.Module):
    """Conformer (or ResNet-IBN) encoder with time pooling and a bottleneck; ``n_classes``
    sizes the classifier used by the focal loss (0 for an inference-only model)."""

    def __init__(self, n_bins: int, p: ModelParams, n_classes: int):
        super().__init__()
        self.config = {"n_bins": n_bins, "n_classes": n_classes, "model": dataclasses.asdict(p)}
        self.backbone = p.backbone
        if p.backbone == "resnet_ibn":
            self.resnet = ResNetIBNEncoder(n_bins, p)
        else:   # conformer; attribute names kept so that older checkpoints load
            self.subsample = Subsampling(n_bins, p.subsample_channels, p.d_model, p.dropout,
                                         p.frame_pool, p.input_norm)
            self.blocks = nn.ModuleList(
                ConformerBlock(p.d_model, p.ff_dim, p.n_heads, p.conv_kernel, p.dropout)
                for _ in range(p.n_blocks))
        self.pool = build_pooling(p.pooling, p.d_model, p.pool_dim, p.pool_hidden,
                                  p.pool_mask_prob, p.gem_p)
        self.bottleneck = build_neck(p.neck, p.pool_dim, p.embedding_dim)
        self.classifier = nn.Linear(p.embedding_dim, n_classes, bias=False) if n_classes else None

    @classmethod
    def from_config(cls, config: dict) -> CoverHunterNet:
        """Rebuild a network from ``self.config`` (stored in every checkpoint); a config
        saved before the backbone keys existed is a Conformer (``LEGACY_MODEL_KEYS``)."""
        model = {**LEGACY_MODEL_KEYS, **config["model"]}
        return cls(config["n_bins"], ModelParams(**model), config["n_classes"])

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame features ``(B, T', d_model)`` and their mask ``(B, T')``, T' ≈ T/(4·frame_pool)."""
        if self.backbone == "resnet_ibn":
            h, lengths = self.resnet(x, lengths)                       # (B, T/4, d)
            return h, lengths_to_mask(lengths, h.shape[1])
        h, lengths = self.subsample(x, lengths)                        # (B, T/4, d)
        mask = lengths_to_mask(lengths, h.shape[1])
        for block in self.blocks:
            h = block(h, mask)
        return h, mask

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                encoder_dtype: torch.dtype | None = None) -> ModelOutput:
        # x: (B, T, bins) log-CQT, zero-padded; lengths: (B,) valid frames
        # encoder_dtype: run the encoder alone under autocast to it (bfloat16 at inference:
        # model/runtime.py); the pooling and the bottleneck stay in the input's precision
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        low = (torch.autocast(x.device.type, dtype=encoder_dtype) if encoder_dtype is not None
               else contextlib.nullcontext())     # not autocast(enabled=False): AMP training stays on
        with low:
            h, mask = self.encode(x, lengths)                           # (B, T/4, d)
        pre = self.pool(h.to(x.dtype) if encoder_dtype is not None else h, mask)   # (B, pool_dim)
        emb = self.bottleneck(pre)                                      # (B, embedding_dim)
        logits = self.classifier(emb) if self.classifier is not None else emb.new_zeros(len(emb), 0)
        return ModelOutput(pre, emb, logits)

    @property
    def embedding_dim(self) -> int:
        return self.bottleneck.out_features

    @torch.no_grad()
    def embed(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
              encoder_dtype: torch.dtype | None = None) -> torch.Tensor:
        """L2-normalised retrieval embeddings ``(B, embedding_dim)`` (eval mode required)."""
        if self.training:
            raise RuntimeError("call model.eval() before embed(): training mode masks attention")
        return nn.functional.normalize(self(x, lengths, encoder_dtype).embedding.float(), dim=-1)
