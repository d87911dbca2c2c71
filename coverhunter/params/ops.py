"""The sections of operations: the catalogue index, the Prefect flows, pretraining."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from coverhunter.params.base import Count, NonNegative, Positive, Size, dataclass


@dataclass
class IndexParams:
    """The catalogue index and identification [II-D retrieval] (``coverhunter identify``)."""
    gallery: Annotated[list[str], Field(min_length=1)]   # manifest splits indexed as the catalogue
    chunk_s: Positive          # chunk length of indexed and query vectors (45 s: the paper's)
    hop_s: Positive            # between chunk starts (= chunk_s: non-overlapping; less: tighter ranges)
    kind: str                  # flat | ivf | hnsw | auto
    nlist: Count               # ivf cells
    nprobe: Count              # ivf cells searched
    hnsw_m: Count              # hnsw links per node
    ef_search: Count           # hnsw search width
    auto_flat_below: Count     # auto: flat below this many vectors, hnsw above
    codec: str                 # ivf, hnsw: float | sq8 (8-bit codes, candidates re-scored exactly)
    refine: Count              # sq8: candidates per query chunk re-scored with the float vectors
    k: Count                   # nearest catalogue chunks fetched per query chunk
    shortlist: Count           # recordings re-ranked exactly
    top: Count                 # works reported per query
    target_far: Annotated[float, Field(gt=0, lt=1)]   # false-accept rate the threshold is calibrated to
    snippet_s: Positive        # short queries of the report: this much from the middle of each test recording
    centre: bool               # chunk vectors centred on the catalogue's mean chunk vector (queries on the same)

    def __post_init__(self) -> None:
        if self.kind not in ("flat", "ivf", "hnsw", "auto"):
            raise ValueError(f"params: index.kind must be flat, ivf, hnsw or auto, got {self.kind!r}")
        if self.codec not in ("float", "sq8"):
            raise ValueError(f"params: index.codec must be float or sq8, got {self.codec!r}")


@dataclass
class ServeParams:
    """``coverhunter serve``: the identification service over HTTP."""
    host: str                    # 127.0.0.1: this machine only; 0.0.0.0: every interface
    port: Annotated[int, Field(ge=0, le=65535)]
    max_upload_mb: Positive      # larger request bodies get 413
    max_duration_s: Positive     # longer recordings get 413
    min_duration_s: NonNegative  # shorter ones get 422


@dataclass
class FlowParams:
    """Prefect flows and the champion/challenger rule (``flow:``)."""
    retries: Size             # extra attempts of a failed stage task
    retry_delay_s: NonNegative
    promotion_margin: NonNegative   # the champion moves only on a main-test-set mAP gain >= this
    deployment: str           # name of the scheduled retraining deployment
    cron: str                 # its schedule (standard cron)
    timezone: str             # IANA zone the cron is read in
    on_overlap: str           # enqueue | cancel_new
    lock_file: str            # one retrain run at a time per checkout
    lock_wait_s: NonNegative
    state_file: str           # the last successful retrain (what ran, the decision)
    shards: Size              # flows/extract.py, flows/index.py: shards of the work, one Dask task each
    dask_address: str | None  # the Dask scheduler they run on; None: a local cluster
    dask_workers: Size        # processes of that local cluster

    def __post_init__(self) -> None:
        if self.on_overlap not in ("enqueue", "cancel_new"):
            raise ValueError(f"params: flow.on_overlap must be enqueue or cancel_new, got {self.on_overlap!r}")


@dataclass
class PretrainParams:
    """``make pretrain``: the pipeline on the large catalogue in a workspace of its own."""
    workspace: str              # folder with its own params.yaml, DVC lock, MLflow store, outputs
    overrides: dict[str, Any]   # dotted keys of params.yaml set in the workspace's copy
