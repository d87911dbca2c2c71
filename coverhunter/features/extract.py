"""Feature extraction for a whole catalogue: one log-CQT file per recording, an index table.

Incremental and resumable: a recording is recomputed only when its audio content (SHA-1),
the feature parameters or the front end's code changed, or when its feature file no longer has the size and
SHA-1 the index recorded for it (a truncated or edited file is recomputed, and named);
finished features are written atomically and the index is saved after every batch, so a
kill loses at most one batch. A reader that meets a damaged file names it and the fix. A file that cannot be decoded
does not stop the others: every other recording is extracted, then the run fails with the
name of each bad file and the fix, leaving all finished features in place.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from coverhunter.atomic import write_atomic
from coverhunter.digest import file_sha1, json_sha1
from coverhunter.features.audio import AudioDecodeError, audio_duration, load_audio
from coverhunter.features.cqt import CQTFrontEnd, batches_by_duration, extract_cqt
from coverhunter.params import FeatureParams
from coverhunter.progress import bar as progress_bar

INDEX = "index.parquet"
PARTS = "parts"            # a sharded extraction's per-shard indexes, merged into INDEX at the end
INDEX_COLUMNS = ["recording_id", "feature_file", "n_frames", "audio_sha1", "features_hash",
                 "feature_bytes", "feature_sha1"]
log = logging.getLogger(__name__)


class ExtractionError(RuntimeError):
    """Some recordings could not be extracted; the message names each file."""


class FeatureFileError(RuntimeError):
    """A feature file is missing or damaged; the message names it and the fix."""


def _intact(out_dir: Path, row: dict) -> bool:
    """Whether a feature file still has the size and SHA-1 its index row recorded.

    Rows of an index written before those were recorded are checked as a reader checks
    them (:func:`_open`: the array loads with its frame count) and get their size and
    hash filled in.
    """
    path = out_dir / row["feature_file"]
    if not path.is_file():
        return False
    if not row.get("feature_sha1"):
        try:
            _open(path, row["recording_id"], row["n_frames"])
        except FeatureFileError:
            return False
        row["feature_bytes"], row["feature_sha1"] = path.stat().st_size, file_sha1(path)
        return True
    return path.stat().st_size == row["feature_bytes"] and file_sha1(path) == row["feature_sha1"]


# The code that turns audio into features: an edit to any of them (a fix, say) makes every
# recording's features stale, as a changed parameter does
FRONT_END_CODE = ("audio.py", "cqt.py", "multirate.py")


def front_end_digest() -> str:
    """SHA-1 of the front end's source files (:data:`FRONT_END_CODE`)."""
    here = Path(__file__).parent
    return json_sha1({name: file_sha1(here / name) for name in FRONT_END_CODE}, 16)


def features_hash(p: FeatureParams) -> str:
    """Hash of every parameter that changes the features (batching does not) and of the
    code that computes them."""
    relevant = {k: v for k, v in dataclasses.asdict(p).items() if k != "batch_seconds"}
    return json_sha1({**relevant, "code": front_end_digest()}, 16)


def _safe_name(recording_id: str) -> str:
    """A file name for a recording id: readable prefix + hash (ids may hold '/' etc.)."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in recording_id)[:60]
    return f"{stem}-{hashlib.sha1(recording_id.encode()).hexdigest()[:8]}.npy"


def read_index(out_dir: Path) -> pd.DataFrame:
    path = out_dir / INDEX
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="object") for c in INDEX_COLUMNS})
    return pd.read_parquet(path)


def _write_index(path: Path, rows: dict[str, dict]) -> None:
    df = pd.DataFrame(sorted(rows.values(), key=lambda r: r["recording_id"]), columns=INDEX_COLUMNS)
    write_atomic(path, lambda tmp: df.to_parquet(tmp, index=False))


def _save_array(path: Path, array: np.ndarray) -> tuple[int, str]:
    """Write ``array`` atomically; returns the file's size and SHA-1 (hashed before writing,
    not read back)."""
    buf = io.BytesIO()
    np.save(buf, array)
    data = buf.getvalue()
    write_atomic(path, lambda tmp: tmp.write_bytes(data))
    return len(data), hashlib.sha1(data).hexdigest()


class Todo(NamedTuple):
    """A recording whose features are (re)computed."""
    recording_id: str
    audio: Path
    audio_sha1: str


def plan(recording_ids: Sequence[str], audio_files: Sequence[str | Path], out_dir: Path,
         p: FeatureParams) -> tuple[dict[str, dict], list[Todo]]:
    """What an extraction of these recordings keeps and what it computes: the index rows of
    recordings whose features are current and intact (finished shards' rows included), and
    the rest, in manifest order. Removes the files of recordings no longer listed and the
    half-written files of a killed run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for leftover in [*out_dir.glob("*.tmp.npy"), *out_dir.rglob("*.tmp.parquet")]:
        leftover.unlink()                          # half-written by a killed run
    fhash = features_hash(p)
    old = {r["recording_id"]: r for r in read_index(out_dir).to_dict("records")}
    for part in sorted((out_dir / PARTS).glob("*.parquet")):    # a sharded run's finished work
        old.update((r["recording_id"], r) for r in pd.read_parquet(part).to_dict("records"))
    rows: dict[str, dict] = {}
    todo: list[Todo] = []
    damaged: list[str] = []
    for rid, audio in zip(recording_ids, audio_files):
        sha = file_sha1(audio) if Path(audio).is_file() else ""
        prev = old.get(rid)
        current = prev is not None and prev["audio_sha1"] == sha and prev["features_hash"] == fhash
        if current and _intact(out_dir, prev):
            rows[rid] = prev
        else:
            if current:
                damaged.append(f"{out_dir / prev['feature_file']} ({rid})")
            todo.append(Todo(rid, Path(audio), sha))
    if damaged:
        log.warning("recomputing %d feature file(s) that are missing or no longer match their "
                    "recorded size and SHA-1: %s", len(damaged), ", ".join(damaged))
    for rid in set(old) - set(recording_ids):                 # no longer in the manifest
        (out_dir / old[rid]["feature_file"]).unlink(missing_ok=True)
    return rows, todo


def batches(todo: Sequence[Todo], p: FeatureParams, hints: Sequence[int] | None = None) -> list[list[int]]:
    """Positions in ``todo`` grouped into the CQT's padded batches (``features.batch_seconds``);
    ``hints``: the decoded lengths, when already read from the headers."""
    hints = [_samples_hint(t.audio, p.sample_rate) for t in todo] if hints is None else hints
    return list(batches_by_duration(hints, int(p.batch_seconds * p.sample_rate)))


def compute(todo: Sequence[Todo], out_dir: Path, p: FeatureParams, rows: dict[str, dict],
            index_file: Path, device: str | torch.device = "cpu", progress: bool = True) -> list[str]:
    """Features of ``todo`` into ``out_dir``, batch by batch; after every batch ``rows``
    (updated in place) is written to ``index_file``. Returns the failures, one line each."""
    front = CQTFrontEnd(p)
    fhash = features_hash(p)
    failures: list[str] = []
    bar = progress_bar(len(todo), "extract", "rec", progress)

    def decode(group: list[int]) -> tuple[list[np.ndarray], list[int]]:
        audios, ok = [], []
        for i in group:
            try:
                audios.append(load_audio(todo[i].audio, p.sample_rate))
                ok.append(i)
            except AudioDecodeError as err:
                failures.append(f"recording {todo[i].recording_id}: {err}")
        return audios, ok

    # one budget-sized batch at a time (bounded memory); the next batch decodes on a second
    # thread while this one's CQT runs (libsndfile, soxr and torch release the GIL)
    t0, frames = time.perf_counter(), 0
    groups = batches(todo, p)
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(decode, groups[0]) if groups else None
        for g, group in enumerate(groups):
            audios, ok = ahead.result()
            if g + 1 < len(groups):
                ahead = pool.submit(decode, groups[g + 1])
            for i, feats in zip(ok, extract_cqt(audios, front, device) if audios else []):
                rid, _, sha = todo[i]
                name = _safe_name(rid)
                size, digest = _save_array(out_dir / name, feats.astype(p.store_dtype))
                rows[rid] = {"recording_id": rid, "feature_file": name, "n_frames": len(feats),
                             "audio_sha1": sha, "features_hash": fhash,
                             "feature_bytes": size, "feature_sha1": digest}
                frames += len(feats)
            _write_index(index_file, rows)
            bar.update(len(group))
    bar.close()
    if frames:
        hours, minutes = frames / p.frame_rate / 3600, (time.perf_counter() - t0) / 60
        log.info("extracted %.2f h of audio in %.1f min: %.1f h of audio per minute",
                 hours, minutes, hours / minutes)
    return failures


def extraction_error(failures: list[str], saved: int, out_dir: Path) -> ExtractionError:
    """The error of a run some of whose recordings failed: each one named, and the fix."""
    return ExtractionError(
        f"{len(failures)} recording(s) could not be extracted; the other "
        f"{saved} are saved in {out_dir}. Fix or remove these rows and run again "
        "(finished recordings are not recomputed):\n  " + "\n  ".join(failures))


def extract_catalogue(recording_ids: Sequence[str], audio_files: Sequence[str | Path],
                      out_dir: str | Path, p: FeatureParams, device: str | torch.device = "cpu",
                      progress: bool = True) -> pd.DataFrame:
    """Extract log-CQT features of every recording into ``out_dir``; returns the index
    (``recording_id, feature_file, n_frames, audio_sha1, features_hash``).

    Recordings no longer listed are dropped from the index and their files removed.
    """
    out_dir = Path(out_dir)
    rows, todo = plan(recording_ids, audio_files, out_dir, p)
    _write_index(out_dir / INDEX, rows)
    shutil.rmtree(out_dir / PARTS, ignore_errors=True)        # folded into the index above
    failures = compute(todo, out_dir, p, rows, out_dir / INDEX, device, progress)
    if failures:
        raise extraction_error(failures, len(rows), out_dir)
    return read_index(out_dir)


# ---- the same work as shards (flows/extract.py runs them as Dask tasks) -----------------

def shards(todo: Sequence[Todo], p: FeatureParams, n: int) -> list[list[Todo]]:
    """``todo`` cut into at most ``n`` runs of whole CQT batches, of about equal audio: each
    shard computes exactly the batches one process would, so the files are the same bytes."""
    hints = [_samples_hint(t.audio, p.sample_rate) for t in todo]
    groups = batches(todo, p, hints)
    sizes = np.array([sum(hints[i] for i in g) for g in groups])
    cuts = np.searchsorted(np.cumsum(sizes), np.arange(1, n) * sizes.sum() / n) if len(groups) else []
    runs = np.split(np.arange(len(groups)), sorted(set(int(c) + 1 for c in cuts if c + 1 < len(groups))))
    return [[todo[i] for g in run for i in groups[g]] for run in runs if len(run)]


def extract_shard(todo: Sequence[Todo], out_dir: str | Path, p: FeatureParams, name: str,
                  device: str | torch.device = "cpu") -> list[dict]:
    """One shard's features into ``out_dir``, its index rows into ``out_dir/parts/<name>``
    after every batch; returns the rows. Raises :class:`ExtractionError` naming the files
    that failed (the rest stay saved, and a rerun skips them)."""
    out_dir = Path(out_dir)
    part = out_dir / PARTS / f"{name}.parquet"
    part.parent.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    failures = compute(list(todo), out_dir, p, rows, part, device, progress=False)
    if failures:
        raise extraction_error(failures, len(rows), out_dir)
    return list(rows.values())


def merge_shards(out_dir: str | Path, kept: dict[str, dict], shard_rows: Sequence[list[dict]]) -> pd.DataFrame:
    """The index of a sharded extraction: the rows kept and every shard's, as the
    single-process extraction writes it; the shards' parts are then removed."""
    out_dir = Path(out_dir)
    rows = dict(kept)
    for part in shard_rows:
        rows.update((r["recording_id"], r) for r in part)
    _write_index(out_dir / INDEX, rows)
    shutil.rmtree(out_dir / PARTS, ignore_errors=True)
    return read_index(out_dir)


def _samples_hint(path: Path, sample_rate: int) -> int:
    """Decoded length from the file header (for batching); never fails."""
    try:
        return int(audio_duration(path) * sample_rate)
    except AudioDecodeError:
        return sample_rate  # unreadable: decoding it will report the error


def load_features(out_dir: str | Path, recording_ids: Sequence[str],
                  index: pd.DataFrame | None = None) -> list[np.ndarray]:
    """Memory-mapped features ``(frames, bins)`` of the given recordings, in that order."""
    out_dir = Path(out_dir)
    index = read_index(out_dir) if index is None else index
    files = dict(zip(index["recording_id"], index["feature_file"]))
    missing = [r for r in recording_ids if r not in files]
    if missing:
        raise KeyError(f"no features for {len(missing)} recording(s) in {out_dir} "
                       f"(first: {missing[:3]}); run the extract stage")
    frames = dict(zip(index["recording_id"], index["n_frames"]))
    return [_open(out_dir / files[r], r, frames[r]) for r in recording_ids]


def _open(path: Path, recording_id: str, n_frames: int) -> np.ndarray:
    """Memory-map one feature file, or say which file is damaged and how to repair it."""
    fix = "run the extract stage again (`dvc repro extract`): it recomputes damaged files"
    try:
        array = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise FeatureFileError(f"{path} (recording {recording_id}) is missing; {fix}") from None
    except (ValueError, OSError, EOFError) as err:
        raise FeatureFileError(f"{path} (recording {recording_id}) is damaged ({err}); {fix}") from None
    if array.shape[0] != n_frames:
        raise FeatureFileError(f"{path} (recording {recording_id}) has {array.shape[0]} frames, "
                               f"its index says {n_frames}; {fix}")
    return array
