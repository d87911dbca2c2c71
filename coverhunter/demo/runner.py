"""The parallel runner: a job function mapped over items, in order, on a process pool."""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import TypeVar

__all__ = ["Runner"]

T = TypeVar("T")
R = TypeVar("R")


class Runner:
    """Maps a job function over items in order, on a process pool when workers > 1.

    ``workers = 0`` means every CPU core this process may use.
    """

    def __init__(self, workers: int) -> None:
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count() or 1)
        self.workers = workers or cores
        self._pool: Executor | None = None

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterable[R]:
        if self.workers <= 1 or len(items) <= 1:
            return map(fn, items)
        if self._pool is None:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx)
        return self._pool.map(fn, items, chunksize=1)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
