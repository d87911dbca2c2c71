"""Prefect's Dask task runner for the sharded flows (flows/extract.py, flows/index.py): the
cluster at an address, or a local one."""
from __future__ import annotations

import argparse

from prefect_dask import DaskTaskRunner

from coverhunter.params import Params


def runner(p: Params, address: str | None = None, workers: int | None = None) -> DaskTaskRunner:
    """The Dask cluster at ``address`` (default ``flow.dask_address``), else a local one of
    ``workers`` (default ``flow.dask_workers``) single-threaded processes."""
    address = address or p.flow.dask_address
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers or p.flow.dask_workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


def options(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The command-line options both flows take."""
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--address", help="Dask scheduler, tcp://HOST:8786 "
                    "(default: flow.dask_address, else a local cluster)")
    ap.add_argument("--workers", type=int, help="processes of the local cluster (default: flow.dask_workers)")
    ap.add_argument("--shards", type=int, help="default: flow.shards")
    return ap
