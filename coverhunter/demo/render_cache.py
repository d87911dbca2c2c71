"""The render cache: each version's FLAC carries its recipe hash in the comment tag, so a
version whose FLAC already carries the hash is not rendered again."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import soundfile as sf

from coverhunter.demo.recipe import Recipe
from coverhunter.demo.synth import render_version
from coverhunter.demo.tune import Tune

__all__ = ["is_cached", "render_job"]

_HASH_TAG = "coverhunter-demo recipe "


def is_cached(path: Path, digest: str) -> bool:
    """True when ``path`` is a readable FLAC made from the recipe with this hash."""
    try:
        with sf.SoundFile(path) as f:
            return f.comment == _HASH_TAG + digest
    except Exception:  # noqa: BLE001 - missing, partial or foreign file: render again
        return False


def render_job(job: tuple[dict[str, Any], dict[str, dict[str, Any]], int, str, str]) -> str:
    """Worker: render one version and write it as 16-bit FLAC (tmp file, then rename),
    tagged with its recipe hash. ``job`` is ``(recipe fields, {ref: tune JSON},
    sample_rate, path, digest)``; returns the recording id."""
    recipe, tune_data, sample_rate, path, digest = job
    tunes = {ref: Tune.from_json(ref, d) for ref, d in tune_data.items()}
    audio = render_version(Recipe(**recipe), tunes, sample_rate)
    tmp = Path(path).with_suffix(".tmp.flac")
    with sf.SoundFile(tmp, "w", samplerate=sample_rate, channels=1, subtype="PCM_16",
                      format="FLAC") as f:
        f.comment = _HASH_TAG + digest
        f.write(audio)
    os.replace(tmp, path)
    return recipe["recording_id"]
