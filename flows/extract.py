"""The extract stage as shards on a Dask cluster: `python -m flows.extract [--address
tcp://HOST:8786] [--workers N] [--shards N]`.

The catalogue's pending recordings (new, changed or damaged: the stage's own rule) are cut
into shards of whole CQT batches (`coverhunter.pipeline.extract.sharded`); each shard is a
Prefect task on Prefect's Dask task runner (`prefect-dask`), on the cluster at
`flow.dask_address` or on a local cluster of `flow.dask_workers` processes. A shard writes
its feature files and its own index part after every batch; a failed shard is retried
alone (`flow.retries`), and a rerun skips what finished shards wrote. The parts are then
merged into the same `artifacts/features` the single-process stage writes, byte for byte.
Every worker must see the catalogue's audio and `artifacts/features` at the same paths (a
shared file system).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow, task

from coverhunter.features.extract import ExtractionError, extract_shard, merge_shards
from coverhunter.pipeline.extract import sharded
from coverhunter.pipeline.layout import FEATURES, PARAMS, load
from flows.cluster import options, runner


def _retry_unless_bad_audio(task_, task_run, state) -> bool:
    """A shard that names undecodable files fails the same way again: not retried."""
    return not isinstance(getattr(state, "data", None), ExtractionError)


@flow(name="coverhunter-extract")
def extract(params_path: str = str(PARAMS), n_shards: int | None = None) -> dict:
    """Extract the pending recordings shard by shard, then merge the index."""
    p, _ = load(params_path)
    out_dir = FEATURES.resolve()
    kept, parts = sharded(params_path, out_dir, n_shards)
    shard = task(extract_shard, name="extract-shard", retries=p.flow.retries,
                 retry_delay_seconds=p.flow.retry_delay_s, retry_condition_fn=_retry_unless_bad_audio)
    futures = [shard.submit(todo, out_dir, p.features, f"shard-{i:04d}") for i, todo in enumerate(parts)]
    index = merge_shards(out_dir, kept, [f.result() for f in futures])
    return {"recordings": len(index), "frames": int(index["n_frames"].sum()), "shards": len(parts),
            "computed": sum(len(todo) for todo in parts)}


def main(argv: list[str] | None = None) -> dict:
    args = options(argparse.ArgumentParser(description=__doc__.split("\n\n")[0])).parse_args(argv)
    p, _ = load(Path(args.params))
    out = extract.with_options(task_runner=runner(p, args.address, args.workers))(args.params, args.shards)
    print(out)
    return out


if __name__ == "__main__":
    main()
