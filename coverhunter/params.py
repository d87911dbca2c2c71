"""Typed view of ``params.yaml``, the single source of every number the code uses.

Each section maps to a frozen dataclass with no defaults: a missing or unknown key is an
error naming ``section.key``, so a typo in ``params.yaml`` cannot silently fall back to a
hidden default.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml


@dataclass(frozen=True)
class FeatureParams:
    """CQT front end [III-A]."""
    sample_rate: int
    n_bins: int
    bins_per_octave: int
    fmin: float
    hop_s: float
    top_db: float
    amin: float
    batch_seconds: float
    store_dtype: str

    @property
    def hop_length(self) -> int:
        """Hop in samples (640 at 16 kHz and 0.04 s)."""
        return round(self.hop_s * self.sample_rate)

    @property
    def frame_rate(self) -> float:
        """Feature frames per second (25 with the paper's settings)."""
        return self.sample_rate / self.hop_length


@dataclass(frozen=True)
class ModelParams:
    """Conformer backbone, time pooling and bottleneck [II-A, II-B]."""
    d_model: int
    ff_dim: int
    n_heads: int
    n_blocks: int
    conv_kernel: int
    subsample_channels: int
    dropout: float
    pooling: str
    pool_dim: int
    pool_hidden: int
    pool_mask_prob: float
    gem_p: float
    embedding_dim: int


@dataclass(frozen=True)
class LossParams:
    """Joint loss weights [II-C, eq. 4]."""
    focal_gamma: float
    focal_weight: float
    center_weight: float
    triplet_margin: float
    triplet_weight: float


@dataclass(frozen=True)
class TrainParams:
    """Training schedule and batching [II-D, III-A]."""
    chunk_s: float
    hop_s: float
    works_per_batch: int
    versions_per_work: int
    lr: float
    lr_decay: float
    lr_decay_steps: int
    max_steps: int
    checkpoint_every: int
    log_every: int
    pitch_roll_bins: int
    coarse_to_fine: bool
    seed: int
    amp: bool
    device: str


@dataclass(frozen=True)
class EvalParams:
    """Inference chunking [II-D]."""
    chunk_s: float
    hop_s: float
    batch_chunks: int
    min_duration_s: float


@dataclass(frozen=True)
class AlignParams:
    """Coarse-to-fine chunk alignment [II-D]: which chunk pairs of two versions match."""
    threshold: float       # cosine similarity a chunk pair must exceed to be a match
    batch_chunks: int      # chunks per forward pass when embedding training recordings


@dataclass(frozen=True)
class FineParams:
    """Fine model [II-D]: aligned chunk pairs extended to a random length [III-B]."""
    min_s: float           # shortest training chunk (from its aligned start)
    max_s: float           # longest training chunk
    init: str              # scratch (a new model, as the paper) | coarse (start from its weights)
    max_steps: int         # training steps of the fine model (the rest of the schedule is train's)

    def __post_init__(self):
        if self.init not in ("scratch", "coarse"):
            raise ValueError(f"params: fine.init must be 'scratch' or 'coarse', got {self.init!r}")


@dataclass(frozen=True)
class DataParams:
    """The catalogue: manifest path and split names (DESIGN.md, manifest)."""
    manifest: str
    audio_dir: str
    train_split: str
    val_split: str
    test_sets: list[str]
    main_test_set: str

    @property
    def splits(self) -> list[str]:
        """Every split name a manifest may use."""
        return [self.train_split, self.val_split, *self.test_sets]


@dataclass(frozen=True)
class Params:
    features: FeatureParams
    model: ModelParams
    loss: LossParams
    train: TrainParams
    evaluate: EvalParams
    align: AlignParams
    fine: FineParams
    data: DataParams


T = TypeVar("T")


def section(cls: type[T], raw: dict[str, Any], name: str) -> T:
    """Build one section, naming any missing or unknown key."""
    if not isinstance(raw, dict):
        raise ValueError(f"params: section '{name}' must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    missing = sorted(set(fields) - set(raw))
    if unknown or missing:
        parts = [f"unknown key {name}.{k}" for k in unknown]
        parts += [f"missing key {name}.{k}" for k in missing]
        raise ValueError("params: " + "; ".join(parts))
    return cls(**raw)


def from_dict(raw: dict[str, Any]) -> Params:
    """Parse the whole parameter tree (extra top-level sections are left to their stages)."""
    classes = {"features": FeatureParams, "model": ModelParams, "loss": LossParams,
               "train": TrainParams, "evaluate": EvalParams, "align": AlignParams,
               "fine": FineParams, "data": DataParams}
    missing = [k for k in classes if k not in raw]
    if missing:
        raise ValueError(f"params: missing section(s) {', '.join(missing)}")
    return Params(**{k: section(classes[k], raw[k], k) for k in classes})


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read ``params.yaml`` (default: the one in the working directory)."""
    path = Path(path)
    with path.open() as fh:
        raw = yaml.safe_load(fh)
    try:
        return from_dict(raw)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
