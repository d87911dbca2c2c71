"""The cache of parsed tunes (``<out>/cache/tunes-<key>.json``): reading the corpus is
the slow part of a build, so every tune is parsed once, in parallel."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import music21

from coverhunter.demo.parse import EXTRACT_VERSION, load_tune
from coverhunter.demo.runner import Runner
from coverhunter.demo.tune import Tune
from coverhunter.progress import track

__all__ = ["TuneStore"]

_SAVE_EVERY = 1000  # newly parsed tunes between two writes of the cache


def _load_job(job: tuple[str, str, bool]) -> dict[str, Any]:
    """Worker: parse one tune; a tune music21 cannot read is recorded, not raised."""
    ref, title, expand = job
    try:
        return load_tune(ref, title, expand_repeats=expand).to_json()
    except Exception as err:  # noqa: BLE001 - the corpus has a few malformed tunes
        return {"error": f"{type(err).__name__}: {err}"[:300]}


class TuneStore:
    """Parsed tunes, cached as JSON in ``cache_dir``, keyed by the music21 version and
    :data:`~coverhunter.demo.parse.EXTRACT_VERSION`."""

    def __init__(self, cache_dir: Path, runner: Runner) -> None:
        key = hashlib.sha256(f"{music21.__version__}/{EXTRACT_VERSION}".encode()).hexdigest()[:8]
        self.path = cache_dir / f"tunes-{key}.json"
        self.data: dict[str, dict[str, Any]] = (
            json.loads(self.path.read_text()) if self.path.is_file() else {})
        self.runner = runner
        self.dirty = False

    @staticmethod
    def _key(ref: str, expand: bool) -> str:
        return ref if expand else ref + "|as-written"

    def fetch(self, items: Sequence[tuple[str, str]], expand: bool,
              desc: str = "demo: reading corpus tunes") -> list[Tune | None]:
        """Tunes for ``(ref, title)`` items (None where the tune cannot be read)."""
        todo = [(r, t, expand) for r, t in dict(items).items()
                if self._key(r, expand) not in self.data]
        if todo:
            results = self.runner.map(_load_job, todo)
            for k, ((ref, _, _), res) in enumerate(track(zip(todo, results), len(todo), desc, "tune")):
                self.data[self._key(ref, expand)] = res
                self.dirty = True
                if (k + 1) % _SAVE_EVERY == 0:
                    self.save()  # a long first build (demo.size=large) resumes from here
        out: list[Tune | None] = []
        for ref, _ in items:
            d = self.data[self._key(ref, expand)]
            out.append(None if "error" in d else Tune.from_json(ref, d))
        return out

    def save(self) -> None:
        """Write the cache (tmp file, then rename) if any tune was added."""
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, sort_keys=True))
            os.replace(tmp, self.path)
            self.dirty = False
