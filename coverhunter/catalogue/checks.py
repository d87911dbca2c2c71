"""The validation suite's checks: for each, the columns it needs, the rows it fails, the
problem in words and the fix (README: "Your own catalogue")."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from coverhunter.catalogue.manifest import REQUIRED_COLUMNS
from coverhunter.features.audio import level_in_words


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    needs: tuple[str, ...]                       # manifest columns the check reads
    expectation: Callable[[Any], Any]            # gx.expectations module -> Expectation
    column: str                                  # the column reported as the offending value
    detail: Callable[[pd.Series, Facts], tuple[Any, str, str]] | None = None  # row -> value, problem, fix


@dataclass(frozen=True)
class Facts:
    """Look-ups for the failure messages."""
    df: pd.DataFrame
    splits: list[str]
    train_split: str
    test_sets: list[str]
    min_duration_s: float
    duration_key: str = "train.chunk_s"   # the params key that set min_duration_s
    min_rms_dbfs: float = -60.0

    def lines_where(self, mask: pd.Series) -> str:
        return ", ".join(str(v) for v in self.df.loc[mask, "csv_line"])


# long on purpose: the table of checks, one entry each, read top to bottom
def build_checks(splits: list[str], train_split: str, test_sets: list[str],
                 min_duration_s: float, duration_key: str = "train.chunk_s",
                 min_rms_dbfs: float = -60.0) -> list[Check]:
    checks: list[Check] = []
    for col in REQUIRED_COLUMNS:
        checks.append(Check(
            f"column_{col}_present", f"the header has a '{col}' column", (),
            lambda gxe, c=col: gxe.ExpectColumnToExist(column=c), col))
    checks.append(Check(
        "has_recordings", "the manifest has at least one recording", (),
        lambda gxe: gxe.ExpectTableRowCountToBeBetween(min_value=1), "recording_id"))
    for col in REQUIRED_COLUMNS:
        checks.append(Check(
            f"{col}_not_empty", f"every row has a {col}", (col,),
            lambda gxe, c=col: gxe.ExpectColumnValuesToNotBeNull(column=c), col,
            lambda row, f, c=col: (None, f"the {c} cell is empty",
                                   f"fill in {c} on this line")))

    def duplicate(row, f):
        rid = row["recording_id"]
        others = f.lines_where((f.df["recording_id"] == rid) & (f.df["csv_line"] != row["csv_line"]))
        return rid, f"recording_id {rid!r} is also used on line(s) {others}", \
            "give every recording its own recording_id (or delete the repeated row)"
    checks.append(Check(
        "recording_id_unique", "recording_id is unique", ("recording_id",),
        lambda gxe: gxe.ExpectColumnValuesToBeUnique(column="recording_id"), "recording_id",
        duplicate))

    def same_file(row, f):
        others = f.lines_where((f.df["audio_file"] == row["audio_file"])
                               & (f.df["csv_line"] != row["csv_line"]))
        return row["audio_path"], (f"the audio file {row['audio_file']} is also listed on "
                                   f"line(s) {others}"), (
            "list each recording once: delete the repeated row or point it at its own file")
    checks.append(Check(
        "audio_file_unique", "each audio file is listed once", ("audio_path",),
        lambda gxe: gxe.ExpectColumnValuesToBeUnique(column="audio_file"), "audio_path",
        same_file))

    known = ", ".join(splits)
    checks.append(Check(
        "split_known", f"split is one of: {known}", ("split",),
        lambda gxe: gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(splits)),
        "split",
        lambda row, f: (row["split"], f"unknown split {row['split']!r}",
                        f"use one of: {known} (data.train_split / val_split / test_sets "
                        "in params.yaml)")))
    checks.append(Check(
        "file_exists", "the audio file exists", ("audio_path",),
        lambda gxe: gxe.ExpectColumnValuesToBeInSet(column="file_exists", value_set=[True]),
        "audio_path",
        lambda row, f: (row["audio_path"], f"no audio file at {row['audio_file']}",
                        "fix audio_path (relative to the manifest's folder) or add the file")))
    checks.append(Check(
        "file_decodes", "the whole audio file decodes", ("audio_path",),
        lambda gxe: gxe.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True]),
        "audio_path",
        lambda row, f: (row["audio_path"], str(row["probe_error"]).split("; ")[0],
                        "re-encode the file as wav/flac/ogg/mp3 (or replace it), "
                        "or delete the row")))
    checks.append(Check(
        "duration_at_least_min", f"the audio lasts at least {min_duration_s:g} s "
        f"({duration_key})", ("audio_path",),
        lambda gxe: gxe.ExpectColumnValuesToBeBetween(column="measured_duration_s",
                                                      min_value=float(min_duration_s)),
        "measured_duration_s",
        lambda row, f: (round(float(row["measured_duration_s"]), 3),
                        f"the audio lasts {row['measured_duration_s']:.2f} s, shorter than "
                        f"the {f.min_duration_s:g} s minimum ({f.duration_key})",
                        f"use a recording of at least {f.min_duration_s:g} s, or delete the row")))

    def silent(row, f):
        rms = float(row["rms_dbfs"])
        level = level_in_words(rms)
        return (round(rms, 1) if np.isfinite(rms) else level), (
            f"the audio is silent: its RMS level is {level}, under the "
            f"{f.min_rms_dbfs:g} dBFS floor (data.min_rms_dbfs)"), (
            "replace it with the real recording, or delete the row (a silent file has "
            "no features to compare)")
    checks.append(Check(
        "audio_not_silent", f"the audio is louder than {min_rms_dbfs:g} dBFS RMS "
        "(data.min_rms_dbfs)", ("audio_path",),
        lambda gxe: gxe.ExpectColumnValuesToBeBetween(column="rms_dbfs",
                                                      min_value=float(min_rms_dbfs)),
        "rms_dbfs", silent))

    def single(row, f):
        n = int(row["train_versions"])
        return row["work_id"], (
            f"work {row['work_id']!r} has {n} version(s) in {f.train_split}; training needs "
            "at least 2 per work"), (
            f"add another version of the work to {f.train_split}, move it to a held-out "
            "split, or delete the row")
    checks.append(Check(
        "train_works_have_2_versions", f"every work in {train_split} has at least 2 versions",
        ("work_id", "split"),
        lambda gxe: gxe.ExpectColumnValuesToBeBetween(column="train_versions", min_value=2),
        "work_id", single))

    def leak_train(row, f):
        w = row["work_id"]
        lines = f.lines_where((f.df["work_id"] == w) & (f.df["split"] == f.train_split))
        return w, (f"work {w!r} is in {row['split']} and also in {f.train_split} "
                   f"(line(s) {lines})"), (
            f"keep every version of a work on one side: move this row to {f.train_split} "
            f"or move lines {lines} out of it")
    checks.append(Check(
        "no_train_work_held_out", f"no work is in both {train_split} and a held-out split "
        "(val or a test set)", ("work_id", "split"),
        lambda gxe: gxe.ExpectColumnValuesToBeInSet(column="work_in_train", value_set=[False]),
        "work_id", leak_train))

    def leak_test(row, f):
        w = row["work_id"]
        lines = f.lines_where((f.df["work_id"] == w) & f.df["split"].isin(f.test_sets))
        return w, (f"work {w!r} is in {row['split']} and also in a test set "
                   f"(line(s) {lines})"), (
            "keep val and test works apart: move this row to the test set or those "
            "lines to val")
    checks.append(Check(
        "no_val_work_in_test", "no work is in both val and a test set", ("work_id", "split"),
        lambda gxe: gxe.ExpectColumnValuesToBeInSet(column="work_in_test", value_set=[False]),
        "work_id", leak_test))
    return checks
