"""Feature extraction for a whole catalogue: one log-CQT file per recording, an index table.

Incremental and resumable: a recording is recomputed only when its audio content (SHA-1)
or the feature parameters changed, or when its feature file no longer has the size and
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
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


def features_hash(p: FeatureParams) -> str:
    """Hash of every parameter that changes the features (batching does not)."""
    relevant = {k: v for k, v in dataclasses.asdict(p).items() if k != "batch_seconds"}
    return json_sha1(relevant, 16)


def _safe_name(recording_id: str) -> str:
    """A file name for a recording id: readable prefix + hash (ids may hold '/' etc.)."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in recording_id)[:60]
    return f"{stem}-{hashlib.sha1(recording_id.encode()).hexdigest()[:8]}.npy"


def read_index(out_dir: Path) -> pd.DataFrame:
    path = out_dir / INDEX
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="object") for c in INDEX_COLUMNS})
    return pd.read_parquet(path)


def _write_index(out_dir: Path, rows: dict[str, dict]) -> None:
    df = pd.DataFrame(sorted(rows.values(), key=lambda r: r["recording_id"]), columns=INDEX_COLUMNS)
    write_atomic(out_dir / INDEX, lambda tmp: df.to_parquet(tmp, index=False))


def _save_array(path: Path, array: np.ndarray) -> tuple[int, str]:
    """Write ``array`` atomically; returns the file's size and SHA-1 (hashed before writing,
    not read back)."""
    buf = io.BytesIO()
    np.save(buf, array)
    data = buf.getvalue()
    write_atomic(path, lambda tmp: tmp.write_bytes(data))
    return len(data), hashlib.sha1(data).hexdigest()


def extract_catalogue(recording_ids: Sequence[str], audio_files: Sequence[str | Path],
                      out_dir: str | Path, p: FeatureParams, device: str | torch.device = "cpu",
                      progress: bool = True) -> pd.DataFrame:
    """Extract log-CQT features of every recording into ``out_dir``; returns the index
    (``recording_id, feature_file, n_frames, audio_sha1, features_hash``).

    Recordings no longer listed are dropped from the index and their files removed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for leftover in [*out_dir.glob("*.tmp.npy"), *out_dir.glob("*.tmp.parquet")]:
        leftover.unlink()                          # half-written by a killed run
    fhash = features_hash(p)
    old = {r["recording_id"]: r for r in read_index(out_dir).to_dict("records")}
    rows: dict[str, dict] = {}
    todo: list[tuple[str, Path, str]] = []
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
            todo.append((rid, Path(audio), sha))
    if damaged:
        log.warning("recomputing %d feature file(s) that are missing or no longer match their "
                    "recorded size and SHA-1: %s", len(damaged), ", ".join(damaged))
    for rid in set(old) - set(recording_ids):                 # no longer in the manifest
        (out_dir / old[rid]["feature_file"]).unlink(missing_ok=True)
    _write_index(out_dir, rows)

    front = CQTFrontEnd(p)
    budget = int(p.batch_seconds * p.sample_rate)
    failures: list[str] = []
    bar = progress_bar(len(todo), "extract", "rec", progress)

    def decode(group: list[int]) -> tuple[list[np.ndarray], list[int]]:
        audios, ok = [], []
        for i in group:
            rid, audio, _ = todo[i]
            try:
                audios.append(load_audio(audio, p.sample_rate))
                ok.append(i)
            except AudioDecodeError as err:
                failures.append(f"recording {rid}: {err}")
        return audios, ok

    # one budget-sized batch at a time (bounded memory); the next batch decodes on a second
    # thread while this one's CQT runs (libsndfile, soxr and torch release the GIL)
    t0, frames = time.perf_counter(), 0
    groups = list(batches_by_duration([_samples_hint(a, p.sample_rate) for _, a, _ in todo], budget))
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
            _write_index(out_dir, rows)
            bar.update(len(group))
    bar.close()
    if frames:
        hours, minutes = frames / p.frame_rate / 3600, (time.perf_counter() - t0) / 60
        log.info("extracted %.2f h of audio in %.1f min: %.1f h of audio per minute",
                 hours, minutes, hours / minutes)
    if failures:
        raise ExtractionError(
            f"{len(failures)} recording(s) could not be extracted; the other "
            f"{len(rows)} are saved in {out_dir}. Fix or remove these rows and run again "
            "(finished recordings are not recomputed):\n  " + "\n  ".join(failures))
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
