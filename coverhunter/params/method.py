"""The sections of the method: CQT features, model, loss, training, evaluation,
baselines, alignment, fine training, augmentation and the catalogue's splits."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from coverhunter.params.base import Count, NonNegative, Positive, Size, dataclass

RUNTIMES = ("torch", "onnx", "torch_bf16")   # evaluate.runtime: what runs the network at inference (model/runtime.py)


@dataclass
class FeatureParams:
    """CQT front end [III-A]."""
    sample_rate: Count
    n_bins: Count
    bins_per_octave: Count
    fmin: Positive
    hop_s: Positive
    top_db: Positive
    amin: Positive
    batch_seconds: Positive
    store_dtype: str
    cqt: str               # nnaudio: CQT1992v2 | multirate: octave by octave (features/multirate.py)

    def __post_init__(self) -> None:
        if self.cqt not in ("nnaudio", "multirate"):
            raise ValueError(f"params: features.cqt must be nnaudio or multirate, got {self.cqt!r}")

    @property
    def hop_length(self) -> int:
        """Hop in samples (640 at 16 kHz and 0.04 s)."""
        return round(self.hop_s * self.sample_rate)

    @property
    def frame_rate(self) -> float:
        """Feature frames per second (25 with the paper's settings)."""
        return self.sample_rate / self.hop_length


@dataclass
class ModelParams:
    """Conformer backbone, time pooling and bottleneck [II-A, II-B]."""
    backbone: str
    frame_pool: Count
    input_norm: str
    d_model: Count
    ff_dim: Count
    n_heads: Count
    n_blocks: Size
    conv_kernel: Count
    subsample_channels: Count
    dropout: Annotated[float, Field(ge=0, lt=1)]
    pooling: str
    pool_dim: Count
    pool_hidden: Count
    pool_mask_prob: Annotated[float, Field(ge=0, lt=1)]
    gem_p: Positive
    embedding_dim: Count
    neck: str
    resnet_width: int
    resnet_layers: list[int]

    def __post_init__(self) -> None:
        if self.backbone not in ("conformer", "resnet_ibn"):
            raise ValueError(f"params: model.backbone must be 'conformer' or 'resnet_ibn', "
                             f"got {self.backbone!r}")
        if self.neck not in ("bnneck", "linear"):
            raise ValueError(f"params: model.neck must be 'bnneck' or 'linear', got {self.neck!r}")
        if (not isinstance(self.resnet_layers, (list, tuple)) or len(self.resnet_layers) != 4
                or any(not isinstance(n, int) or n < 1 for n in self.resnet_layers)):
            raise ValueError(f"params: model.resnet_layers must be 4 block counts >= 1, "
                             f"got {self.resnet_layers!r}")
        object.__setattr__(self, "resnet_layers", [int(n) for n in self.resnet_layers])


@dataclass
class LossParams:
    """Joint loss weights [II-C, eq. 4]."""
    focal_gamma: NonNegative
    focal_weight: NonNegative
    center_weight: NonNegative
    triplet_margin: NonNegative
    triplet_weight: NonNegative
    focal_alpha: str        # inverse_frequency: α_c = N / (C·n_c) (eq. 1) | none: α = 1

    def __post_init__(self) -> None:
        if self.focal_alpha not in ("inverse_frequency", "none"):
            raise ValueError(f"params: loss.focal_alpha must be 'inverse_frequency' or 'none', "
                             f"got {self.focal_alpha!r}")


@dataclass
class TrainParams:
    """Training schedule and batching [II-D, III-A]."""
    chunk_s: Positive
    hop_s: Positive
    works_per_batch: Annotated[int, Field(ge=2)]   # the triplet loss needs negatives
    versions_per_work: Annotated[int, Field(ge=2)]  # ... and positives
    lr: Positive
    lr_decay: Annotated[float, Field(gt=0, le=1)]
    lr_decay_steps: Count
    max_steps: Size
    checkpoint_every: Count
    log_every: Count
    pitch_roll_bins: Size
    tricks: bool
    prefetch_batches: Size
    seed: int
    amp: bool
    device: str
    init: str              # pretrained: the coarse model starts from <pretrained>/model.pt | scratch
    pretrained: str        # folder of the shipped checkpoint (model.pt, MODEL_CARD.md)

    def __post_init__(self) -> None:
        if self.init not in ("pretrained", "scratch"):
            raise ValueError(f"params: train.init must be 'pretrained' or 'scratch', got {self.init!r}")


@dataclass
class EvalParams:
    """Inference chunking [II-D]."""
    chunk_s: Positive
    hop_s: Positive
    batch_chunks: Count
    min_duration_s: NonNegative
    tsne_perplexity: Positive   # the Fig. 3 map of the main test set
    train_works: int         # training works (all their versions) also scored as the set train_works; 0 = off
    search: str              # exact: every chunk pair | index: through a faiss index of index.kind, k = index.k
    runtime: str             # torch | onnx | torch_bf16: what runs the network at inference (evaluate, index, ...)

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"params: evaluate.runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        n = self.train_works
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"params: evaluate.train_works must be an integer >= 0, got {n!r}")
        if self.search not in ("exact", "index"):
            raise ValueError(f"params: evaluate.search must be exact or index, got {self.search!r}")


@dataclass
class BaselineParams:
    """One set of constants of the training-free reference rows (coverhunter/retrieval/baselines.py):
    chroma 2DFTM and key-invariant mean chroma. ``baselines:`` maps a profile name to one."""
    chroma_power: float    # each chroma frame is divided by its max and raised to this power
    block_frames: int      # 2DFTM: chroma frames averaged per block (25 -> 25/block_frames per s)
    patch_frames: int      # 2DFTM patch length, in blocks
    patch_hop: int         # blocks between 2DFTM patch starts
    power: float           # the median 2DFTM is raised to this before the L2 normalisation

    def __post_init__(self) -> None:
        problems = [f"baselines.{k} must be an integer >= 1, got {getattr(self, k)!r}"
                    for k in ("block_frames", "patch_frames", "patch_hop")
                    if isinstance(getattr(self, k), bool) or not isinstance(getattr(self, k), int)
                    or getattr(self, k) < 1]
        problems += [f"baselines.{k} must be > 0, got {getattr(self, k)!r}"
                     for k in ("chroma_power", "power") if not getattr(self, k) > 0]
        if problems:
            raise ValueError("params: " + "; ".join(problems))


@dataclass
class FusionParams:
    """Late fusion of the final model with the 2DFTM (coverhunter/retrieval/fusion.py): the
    ``fused`` row of evaluate and score, and the ranking of ``identify``."""
    weight: Annotated[float, Field(ge=0, le=1)]   # share of the rescaled 2DFTM distance; 0 = the model alone
    profile: str           # the baselines: profile whose 2DFTM constants are fused (with fit: the first tried)
    fit_profiles: list[str]  # with fit: the profiles also tried; the profile and weight are fitted together
    centre: bool           # centre the 2DFTM vectors on the catalogue's mean before their cosine
    fit_recordings: Count  # the index stage measures both means on at most this many catalogue recordings
    fit: bool              # weight and profile chosen on labelled works the model never trained on (val; cross-fitted)
    fit_step: Annotated[float, Field(gt=0, le=1)]   # the weights tried: 0, fit_step, ..., 1
    fit_folds: Count       # evaluation: a set's works dealt into this many folds, each scored at the others' weight
    plateau: Annotated[float, Field(ge=0)]          # the largest weight whose re-ranked mAP is within this of the best

    def candidates(self) -> list[str]:
        """The 2DFTM profiles a fusion may use, in order of preference: ``profile``, then,
        with ``fit``, the other ``fit_profiles``."""
        return [self.profile, *(x for x in self.fit_profiles if x != self.profile)] if self.fit else [self.profile]


@dataclass
class RerankParams:
    """Mutual-neighbour re-ranking of a query's shortlist (coverhunter/retrieval/rerank.py):
    the ``reranked`` row of evaluate and score, and the order of ``identify``'s answers."""
    weight: Annotated[float, Field(ge=0)]  # weight of each neighbour's term; 0 = off
    shortlist: Count       # neighbours are sought among this many of the query's best recordings


@dataclass
class AlignParams:
    """Coarse-to-fine chunk alignment [II-D]: which chunk pairs of two versions match."""
    threshold: Annotated[float, Field(ge=-1, le=1)]  # cosine similarity a chunk pair must exceed to be a match
    min_votes: Count        # matches the offset Δ of a recording pair needs (1 = the paper's mode alone)
    batch_chunks: Count     # chunks per forward pass when embedding training recordings


@dataclass
class FineParams:
    """Fine model [II-D]: aligned chunk pairs extended to a random length [III-B]."""
    enabled: bool          # coarse-to-fine on; off: no alignment, the coarse model is the final one
    min_s: Positive        # shortest training chunk (from its aligned start)
    max_s: Positive        # longest training chunk
    init: str              # scratch (a new model, as the paper) | coarse (start from its weights)
    max_steps: Size        # training steps of the fine model (the rest of the schedule is train's)
    pretrained_share: Annotated[float, Field(ge=0, le=1)]   # the final weights: this share of the
                           # pretrained checkpoint's (train.init: pretrained and fine.init: coarse only)

    def __post_init__(self):
        if self.init not in ("scratch", "coarse"):
            raise ValueError(f"params: fine.init must be 'scratch' or 'coarse', got {self.init!r}")
        if self.max_s < self.min_s:
            raise ValueError(f"params: fine.max_s must be >= fine.min_s, got {self.max_s} < {self.min_s}")


@dataclass
class AugmentParams:
    """On-the-fly training tricks [III-B]: audio (speed, noise, volume) and CQT (roll, tempo, masks)."""
    speed_prob: float
    speed_rate: tuple[float, float]
    noise_prob: float
    snr_db: tuple[float, float]
    noise_dir: str | None
    noise_coloured_share: float
    noise_folder_share: float
    noise_other_work_share: float
    noise_exponent: tuple[float, float]
    volume_prob: float
    volume_db: tuple[float, float]
    pitch_roll_prob: float
    tempo_prob: float
    tempo_rate: tuple[float, float]
    overlay_prob: float
    overlay_snr_db: tuple[float, float]
    mask_prob: float
    time_masks: int
    time_mask_max_frames: int
    freq_masks: int
    freq_mask_max_bins: int
    mask_fill: str

    def __post_init__(self) -> None:
        problems = []
        for name in ("speed_rate", "snr_db", "noise_exponent", "volume_db", "tempo_rate", "overlay_snr_db"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or len(value) != 2 or value[0] > value[1]:
                problems.append(f"augment.{name} must be [low, high] with low <= high, got {value}")
            else:
                object.__setattr__(self, name, (float(value[0]), float(value[1])))
        for name in ("speed_prob", "noise_prob", "volume_prob", "pitch_roll_prob", "tempo_prob", "overlay_prob",
                     "mask_prob", "noise_coloured_share", "noise_folder_share", "noise_other_work_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"augment.{name} must be in [0, 1], got {getattr(self, name)}")
        shares = (self.noise_coloured_share, self.noise_folder_share, self.noise_other_work_share)
        if abs(sum(shares) - 1.0) > 1e-6:
            problems.append(f"augment.noise_*_share must sum to 1, got {sum(shares)}")
        if not problems and self.speed_rate[0] <= 0:
            problems.append(f"augment.speed_rate must be > 0, got {self.speed_rate}")
        if not problems and self.tempo_rate[0] <= 0:
            problems.append(f"augment.tempo_rate must be > 0, got {self.tempo_rate}")
        for name in ("time_masks", "time_mask_max_frames", "freq_masks", "freq_mask_max_bins"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"augment.{name} must be an integer >= 0, got {value!r}")
        if self.mask_fill not in ("min", "mean"):
            problems.append(f"augment.mask_fill must be 'min' or 'mean', got {self.mask_fill!r}")
        if self.noise_dir is not None and not isinstance(self.noise_dir, str):
            problems.append(f"augment.noise_dir must be a folder path or null, got {self.noise_dir!r}")
        if problems:
            raise ValueError("params: " + "; ".join(problems))
        if self.noise_dir == "":
            object.__setattr__(self, "noise_dir", None)  # empty = no folder, as null


@dataclass
class DataParams:
    """The catalogue: manifest path and split names (README: "Your own catalogue")."""
    manifest: str
    audio_dir: str
    train_split: str
    val_split: str
    test_sets: Annotated[list[str], Field(min_length=1)]
    main_test_set: str
    min_rms_dbfs: Annotated[float, Field(le=0)]   # the silence floor of validate

    @property
    def splits(self) -> list[str]:
        """Every split name a manifest may use."""
        return [self.train_split, self.val_split, *self.test_sets]
