"""Facts about each manifest row that the validation suite checks: every audio file
decoded once (threads), the measured duration, and per-work counts across splits."""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from coverhunter.features.audio import AudioDecodeError, probe_audio
from coverhunter.progress import bar as progress_bar

COMPUTED_COLUMNS: tuple[str, ...] = (
    "file_exists",          # bool; None where audio_path is empty
    "decodes",              # bool; None where the file is missing
    "measured_duration_s",  # float seconds from a full decode; NaN where it did not decode
    "probe_error",          # str; None where the file decoded
    "rms_dbfs",             # float loudness over the whole file (-inf: digital silence); NaN where it did not decode
    "train_versions",       # float count of train rows of the row's work; NaN off train
    "work_in_train",        # bool for held-out rows (val and test sets); None elsewhere
    "work_in_test",         # bool for val rows; None elsewhere
)


Probed = tuple[bool | None, bool | None, float, str | None, float]


def _probe(path: str | None) -> Probed:
    """(file exists, decodes, measured seconds, error, RMS dBFS) for one audio file."""
    if path is None:
        return None, None, math.nan, None, math.nan
    if not os.path.isfile(path):
        return False, None, math.nan, f"{path}: no such file", math.nan
    try:
        facts = probe_audio(path)
    except AudioDecodeError as err:
        return True, False, math.nan, str(err), math.nan
    return True, True, facts.duration_s, None, facts.rms_dbfs


def probe_files(paths: list[str | None], workers: int | None = None,
                progress: bool = True) -> list[Probed]:
    """Probe every file (threads: libsndfile releases the GIL), with a progress bar."""
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            progress_bar(len(paths), "decode check", "file", progress) as bar:
        out = []
        for item in pool.map(_probe, paths):
            out.append(item)
            bar.update()
    return out


def add_computed_columns(df: pd.DataFrame, splits: list[str], train_split: str,
                         test_sets: list[str], workers: int | None = None,
                         progress: bool = True) -> pd.DataFrame:
    """Return a copy of the manifest table with :data:`COMPUTED_COLUMNS` added."""
    df = df.copy()
    probed = probe_files(list(df["audio_file"]), workers=workers, progress=progress)
    df["file_exists"] = pd.Series([p[0] for p in probed], index=df.index, dtype=object)
    df["decodes"] = pd.Series([p[1] for p in probed], index=df.index, dtype=object)
    df["measured_duration_s"] = pd.Series([p[2] for p in probed], index=df.index, dtype=float)
    df["probe_error"] = pd.Series([p[3] for p in probed], index=df.index, dtype=object)
    df["rms_dbfs"] = pd.Series([p[4] for p in probed], index=df.index, dtype=float)

    n = len(df)
    train_versions = np.full(n, np.nan)
    work_in_train: list[bool | None] = [None] * n
    work_in_test: list[bool | None] = [None] * n
    if "work_id" in df and "split" in df:
        work, split = df["work_id"], df["split"]
        train_counts = work[split == train_split].value_counts()
        train_works = set(train_counts.index)
        test_works = set(work[split.isin(test_sets)].dropna())
        val_splits = set(splits) - {train_split} - set(test_sets)
        for i, (w, s) in enumerate(zip(work, split)):
            if w is None or s is None:
                continue
            if s == train_split:
                train_versions[i] = train_counts[w]
            elif s in test_sets or s in val_splits:
                work_in_train[i] = w in train_works
                if s in val_splits:
                    work_in_test[i] = w in test_works
    df["train_versions"] = train_versions
    df["work_in_train"] = pd.Series(work_in_train, index=df.index, dtype=object)
    df["work_in_test"] = pd.Series(work_in_test, index=df.index, dtype=object)
    return df
