"""Progress of long steps: a tqdm bar on a terminal, otherwise a log line every
``LOG_EVERY_S`` seconds and one at the end (a redirected log gets no ``\\r`` updates)."""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator

from tqdm.auto import tqdm

LOG_EVERY_S = 30.0


class LogBar:
    """The part of tqdm's interface the pipeline uses, written as periodic log lines."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int = 0,
                 logger: logging.Logger | None = None):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.log = logger or logging.getLogger("coverhunter.progress")
        self.start = self.last = time.monotonic()
        self.postfix = ""
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= LOG_EVERY_S:
            self._line()

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self) -> None:
        self.last = time.monotonic()
        elapsed = self.last - self.start
        of = f"/{self.total}" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        self.log.info("%s: %d%s %s in %.0f s%s", self.desc, self.n, of, self.unit, elapsed, extra)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line()

    def __enter__(self) -> LogBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bar(total: int | None, desc: str, unit: str, enabled: bool = True, initial: int = 0):
    """A progress reporter with ``update(n)``, ``set_postfix(...)`` and ``close()``:
    a bar on a terminal, log lines otherwise, nothing when not ``enabled``."""
    if enabled and sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True)
    if enabled:
        return LogBar(total, desc, unit, initial)
    return tqdm(total=total, disable=True)


def track(items: Iterable, total: int | None, desc: str, unit: str, enabled: bool = True) -> Iterator:
    """Iterate ``items``, reporting progress as :func:`bar` does."""
    with bar(total, desc, unit, enabled) as b:
        for item in items:
            yield item
            b.update(1)
