"""The index stage with the catalogue embedded as shards on a Dask cluster: `python -m
flows.index [--address tcp://HOST:8786] [--workers N] [--shards N]`.

The gallery's recordings (`index.gallery`, sorted by id as the stage sorts them) are cut
into `flow.shards` runs; each run is embedded by a Prefect task on Prefect's Dask
task runner (retried alone, `flow.retries`) with the registered model, and the vectors are
joined in order. The rest is the stage itself (`coverhunter.pipeline.index.run`): the
faiss index, the threshold, `reports/index.json`, the MLflow run. The index ranks as the
stage's does (the vectors agree to float rounding). Every worker must see
`artifacts/features` and the model at the same paths.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow, task

from coverhunter.params import Params
from coverhunter.pipeline import index as stage
from coverhunter.pipeline.layout import PARAMS, load
from flows.cluster import options, runner


def _embed_shard(p: Params, rows: pd.DataFrame, model_path: Path, features_dir: Path) -> tuple[list, list, list]:
    return stage.embed_rows(p, rows, model_path, features_dir)


def sharded_embed(n_shards: int, retries: int, retry_delay_s: float) -> stage.Embedder:
    """An ``embed`` for :func:`coverhunter.pipeline.index.build`: ``n_shards`` Dask tasks."""
    shard = task(_embed_shard, name="embed-shard", retries=retries, retry_delay_seconds=retry_delay_s)

    def embed(p: Params, rows: pd.DataFrame, model_path: Path, features_dir: Path):
        runs = [r for r in np.array_split(np.arange(len(rows)), n_shards) if len(r)]
        futures = [shard.submit(p, rows.iloc[r], model_path.resolve(), Path(features_dir).resolve())
                   for r in runs]
        parts = [f.result() for f in futures]
        return tuple([x for part in parts for x in part[k]] for k in range(3))
    return embed


@flow(name="coverhunter-index")
def index(params_path: str = str(PARAMS), n_shards: int | None = None) -> dict:
    p, _ = load(params_path)
    embed = sharded_embed(n_shards or p.flow.shards, p.flow.retries, p.flow.retry_delay_s)
    return stage.run(params_path, progress=False, embed=embed)


def main(argv: list[str] | None = None) -> dict:
    args = options(argparse.ArgumentParser(description=__doc__.split("\n\n")[0])).parse_args(argv)
    p, _ = load(Path(args.params))
    out = index.with_options(task_runner=runner(p, args.address, args.workers))(args.params, args.shards)
    print({k: out[k] for k in ("kind", "n_vectors", "n_recordings", "threshold")})
    return out


if __name__ == "__main__":
    main()
