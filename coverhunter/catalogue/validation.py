"""Manifest validation: the library part of the ``validate`` stage (README: "Your own catalogue").

Every audio file is decoded once (:func:`coverhunter.features.audio.probe_audio`), the results
and a few per-work facts become columns of the manifest table, and a Great Expectations
1.x suite checks that table. Each failing row is reported with its ``recording_id``, its
CSV line (1-based, the header is line 1: what an editor shows), the offending value and
the fix, in ``validation.json`` (for machines) and ``validation.md`` (for people).
Validation never drops a row: the returned table has every row of the file.

Work leakage rules (the paper's SHS100K splits are disjoint by work):
- a work of the train split may not appear in any held-out split (val or a test set);
- a work of a val split may not appear in a test set (model selection would see it);
- test sets may share works with each other (each is scored on its own).

Great Expectations is imported inside :func:`validate_manifest` (≈ 3–10 s), so importing
this module stays cheap.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coverhunter.catalogue.manifest import REQUIRED_COLUMNS, ManifestError, read_manifest
from coverhunter.features.audio import AudioDecodeError, probe_audio
from coverhunter.progress import bar as progress_bar

COMPUTED_COLUMNS: tuple[str, ...] = (
    "file_exists",          # bool; None where audio_path is empty
    "decodes",              # bool; None where the file is missing
    "measured_duration_s",  # float seconds from a full decode; NaN where it did not decode
    "probe_error",          # str; None where the file decoded
    "train_versions",       # float count of train rows of the row's work; NaN off train
    "work_in_train",        # bool for held-out rows (val and test sets); None elsewhere
    "work_in_test",         # bool for val rows; None elsewhere
)


class ManifestValidationError(ManifestError):
    """The manifest failed validation; the message names every bad row and its fix."""

    def __init__(self, message: str, failures: list[Failure]):
        super().__init__(message)
        self.failures = failures


@dataclass(frozen=True)
class Failure:
    """One failing row of one check (``csv_line`` 1 with no recording for a header problem)."""
    check: str
    csv_line: int
    recording_id: str | None
    column: str
    value: Any
    problem: str
    fix: str

    def describe(self) -> str:
        who = f"recording_id {self.recording_id!r}" if self.recording_id is not None else (
            "header" if self.csv_line == 1 else "recording_id (empty)")
        return f"line {self.csv_line}, {who}: {self.problem}. Fix: {self.fix}"


@dataclass(frozen=True)
class CheckResult:
    """One expectation: ``success`` is None when it was skipped (a column it needs is missing)."""
    name: str
    expectation: str
    description: str
    success: bool | None
    n_failed: int
    skipped: str | None = None


@dataclass
class ValidationResult:
    """What :func:`validate_manifest` found; ``manifest`` keeps every row of the file."""
    ok: bool
    failures: list[Failure]
    manifest: pd.DataFrame          # every row of the file + csv_line, audio_file, COMPUTED_COLUMNS
    checks: list[CheckResult] = field(default_factory=list)
    report_json: Path | None = None
    report_md: Path | None = None
    timings_s: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- probing

def _probe(path: str | None) -> tuple[bool | None, bool | None, float, str | None]:
    """(file exists, decodes, measured seconds, error) for one audio file."""
    if path is None:
        return None, None, math.nan, None
    if not os.path.isfile(path):
        return False, None, math.nan, f"{path}: no such file"
    try:
        return True, True, probe_audio(path), None
    except AudioDecodeError as err:
        return True, False, math.nan, str(err)


def probe_files(paths: list[str | None], workers: int | None = None,
                progress: bool = True) -> list[tuple[bool | None, bool | None, float, str | None]]:
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


# --------------------------------------------------------------------------- checks

@dataclass(frozen=True)
class _Check:
    name: str
    description: str
    needs: tuple[str, ...]                       # manifest columns the check reads
    expectation: Callable[[Any], Any]            # gx.expectations module -> Expectation
    column: str                                  # the column reported as the offending value
    detail: Callable[[pd.Series, _Facts], tuple[Any, str, str]] | None = None  # row -> value, problem, fix


@dataclass(frozen=True)
class _Facts:
    """Look-ups for the failure messages."""
    df: pd.DataFrame
    splits: list[str]
    train_split: str
    test_sets: list[str]
    min_duration_s: float

    def lines_where(self, mask: pd.Series) -> str:
        return ", ".join(str(v) for v in self.df.loc[mask, "csv_line"])


def _checks(splits: list[str], train_split: str, test_sets: list[str],
            min_duration_s: float) -> list[_Check]:
    checks: list[_Check] = []
    for col in REQUIRED_COLUMNS:
        checks.append(_Check(
            f"column_{col}_present", f"the header has a '{col}' column", (),
            lambda gxe, c=col: gxe.ExpectColumnToExist(column=c), col))
    checks.append(_Check(
        "has_recordings", "the manifest has at least one recording", (),
        lambda gxe: gxe.ExpectTableRowCountToBeBetween(min_value=1), "recording_id"))
    for col in REQUIRED_COLUMNS:
        checks.append(_Check(
            f"{col}_not_empty", f"every row has a {col}", (col,),
            lambda gxe, c=col: gxe.ExpectColumnValuesToNotBeNull(column=c), col,
            lambda row, f, c=col: (None, f"the {c} cell is empty",
                                   f"fill in {c} on this line")))

    def duplicate(row, f):
        rid = row["recording_id"]
        others = f.lines_where((f.df["recording_id"] == rid) & (f.df["csv_line"] != row["csv_line"]))
        return rid, f"recording_id {rid!r} is also used on line(s) {others}", \
            "give every recording its own recording_id (or delete the repeated row)"
    checks.append(_Check(
        "recording_id_unique", "recording_id is unique", ("recording_id",),
        lambda gxe: gxe.ExpectColumnValuesToBeUnique(column="recording_id"), "recording_id",
        duplicate))

    def same_file(row, f):
        others = f.lines_where((f.df["audio_file"] == row["audio_file"])
                               & (f.df["csv_line"] != row["csv_line"]))
        return row["audio_path"], (f"the audio file {row['audio_file']} is also listed on "
                                   f"line(s) {others}"), (
            "list each recording once: delete the repeated row or point it at its own file")
    checks.append(_Check(
        "audio_file_unique", "each audio file is listed once", ("audio_path",),
        lambda gxe: gxe.ExpectColumnValuesToBeUnique(column="audio_file"), "audio_path",
        same_file))

    known = ", ".join(splits)
    checks.append(_Check(
        "split_known", f"split is one of: {known}", ("split",),
        lambda gxe: gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(splits)),
        "split",
        lambda row, f: (row["split"], f"unknown split {row['split']!r}",
                        f"use one of: {known} (data.train_split / val_split / test_sets "
                        "in params.yaml)")))
    checks.append(_Check(
        "file_exists", "the audio file exists", ("audio_path",),
        lambda gxe: gxe.ExpectColumnValuesToBeInSet(column="file_exists", value_set=[True]),
        "audio_path",
        lambda row, f: (row["audio_path"], f"no audio file at {row['audio_file']}",
                        "fix audio_path (relative to the manifest's folder) or add the file")))
    checks.append(_Check(
        "file_decodes", "the whole audio file decodes", ("audio_path",),
        lambda gxe: gxe.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True]),
        "audio_path",
        lambda row, f: (row["audio_path"], str(row["probe_error"]).split("; ")[0],
                        "re-encode the file as wav/flac/ogg/mp3 (or replace it), "
                        "or delete the row")))
    checks.append(_Check(
        "duration_at_least_min", f"the audio lasts at least {min_duration_s:g} s "
        "(train.chunk_s)", ("audio_path",),
        lambda gxe: gxe.ExpectColumnValuesToBeBetween(column="measured_duration_s",
                                                      min_value=float(min_duration_s)),
        "measured_duration_s",
        lambda row, f: (round(float(row["measured_duration_s"]), 3),
                        f"the audio lasts {row['measured_duration_s']:.2f} s, shorter than "
                        f"the {f.min_duration_s:g} s chunk (train.chunk_s)",
                        f"use a recording of at least {f.min_duration_s:g} s, or delete the row")))

    def single(row, f):
        n = int(row["train_versions"])
        return row["work_id"], (
            f"work {row['work_id']!r} has {n} version(s) in {f.train_split}; training needs "
            "at least 2 per work"), (
            f"add another version of the work to {f.train_split}, move it to a held-out "
            "split, or delete the row")
    checks.append(_Check(
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
    checks.append(_Check(
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
    checks.append(_Check(
        "no_val_work_in_test", "no work is in both val and a test set", ("work_id", "split"),
        lambda gxe: gxe.ExpectColumnValuesToBeInSet(column="work_in_test", value_set=[False]),
        "work_id", leak_test))
    return checks


# --------------------------------------------------------------------------- GX

def _run_suite(df: pd.DataFrame, checks: list[_Check], runnable: set[str],
               timings: dict[str, float]) -> tuple[dict[str, Any], dict[str, str]]:
    """Run the ``runnable`` checks as one GX suite on ``df``.

    Returns check name → ExpectationValidationResult (runnable checks) and check name →
    GX expectation type (every check, for the report).
    """
    t0 = time.perf_counter()
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig
    timings["gx_import_s"] = time.perf_counter() - t0

    context = gx.get_context(mode="ephemeral")
    context.enable_analytics(False)
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = (context.data_sources.add_pandas("manifest")
             .add_dataframe_asset("recordings")
             .add_batch_definition_whole_dataframe("all_rows"))
    suite = context.suites.add(gx.ExpectationSuite(name="coverhunter_manifest"))
    types = {}
    for check in checks:
        exp = check.expectation(gxe)
        types[check.name] = exp.expectation_type
        if check.name in runnable:
            exp.meta = {"check": check.name}
            exp.description = check.description
            suite.add_expectation(exp)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="manifest", data=batch, suite=suite))
    result = definition.run(batch_parameters={"dataframe": df}, result_format="COMPLETE")
    timings["gx_run_s"] = time.perf_counter() - t0 - timings["gx_import_s"]
    out = {}
    for r in result.results:
        info = r.exception_info or {}
        if info.get("raised_exception"):
            raise RuntimeError(f"Great Expectations failed on {r.expectation_config.type}: "
                               f"{info.get('exception_message')}")
        out[r.expectation_config.meta["check"]] = r
    return out, types


# --------------------------------------------------------------------------- main entry

def validate_manifest(manifest_path: str | Path, splits: list[str], train_split: str,
                      test_sets: list[str], min_duration_s: float, report_dir: str | Path,
                      *, workers: int | None = None, progress: bool = True) -> ValidationResult:
    """Validate the manifest at ``manifest_path`` and write the two reports to ``report_dir``.

    ``splits`` is every allowed split name (``DataParams.splits``), ``train_split`` and
    ``test_sets`` come from ``params.data``, ``min_duration_s`` is ``train.chunk_s``.
    Raises :class:`ManifestError` only for a file that cannot be read as a CSV; every
    other problem (a missing column included) is a failure in the result and the reports.
    """
    splits, test_sets = list(splits), list(test_sets)
    if train_split not in splits or not set(test_sets) <= set(splits):
        raise ValueError(f"split names: train_split {train_split!r} and test_sets {test_sets} "
                         f"must be among splits {splits}")
    manifest_path, report_dir = Path(manifest_path), Path(report_dir)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    raw = read_manifest(manifest_path, require_columns=False)
    df = add_computed_columns(raw, splits, train_split, test_sets, workers=workers,
                              progress=progress)
    timings["probe_s"] = time.perf_counter() - t0

    checks = _checks(splits, train_split, test_sets, min_duration_s)
    runnable = {c.name for c in checks if all(col in df for col in c.needs)}
    gx_results, gx_types = _run_suite(df, checks, runnable, timings)

    facts = _Facts(df, splits, train_split, test_sets, float(min_duration_s))
    failures: list[Failure] = []
    check_results: list[CheckResult] = []
    for check in checks:
        if check.name not in runnable:
            missing = [c for c in check.needs if c not in df]
            check_results.append(CheckResult(check.name, gx_types[check.name], check.description,
                                             None, 0, f"column(s) {', '.join(missing)} missing"))
            continue
        r = gx_results[check.name]
        found: list[Failure] = []
        if not r.success:
            if check.detail is None:  # table-level: a missing column or no rows
                found.append(_table_failure(check, df))
            else:
                for idx in r.result.get("unexpected_index_list") or []:
                    row = df.loc[idx]
                    value, problem, fix = check.detail(row, facts)
                    found.append(Failure(check.name, int(row["csv_line"]),
                                         row.get("recording_id"), check.column,
                                         _plain(value), problem, fix))
        failures.extend(found)
        check_results.append(CheckResult(check.name, gx_types[check.name],
                                         check.description, bool(r.success), len(found)))
    failures.sort(key=lambda f: (f.csv_line, f.check))
    ok = all(c.success is not False for c in check_results) and not failures

    result = ValidationResult(ok=ok, failures=failures, manifest=df, checks=check_results,
                              timings_s=timings)
    report_dir.mkdir(parents=True, exist_ok=True)
    result.report_json = report_dir / "validation.json"
    result.report_md = report_dir / "validation.md"
    summary = _summary(df, manifest_path, splits, min_duration_s, ok, failures)
    _write_json(result, summary)
    _write_md(result, summary)
    return result


def _table_failure(check: _Check, df: pd.DataFrame) -> Failure:
    header = [c for c in df.columns if c not in ("csv_line", "audio_file", *COMPUTED_COLUMNS)]
    if check.name == "has_recordings":
        return Failure(check.name, 1, None, check.column, 0,
                       "the manifest has a header but no recordings",
                       "add one row per recording below the header")
    return Failure(check.name, 1, None, check.column, check.column,
                   f"required column {check.column!r} is missing (the header has: "
                   f"{', '.join(header)})",
                   f"add a {check.column!r} column; required columns are "
                   f"{', '.join(REQUIRED_COLUMNS)}")


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar (NaN and None become None)."""
    if value is None:
        return None
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def raise_for_failures(result: ValidationResult) -> None:
    """Raise :class:`ManifestValidationError` naming every bad row, unless ``result.ok``."""
    if result.ok:
        return
    rows = len({f.csv_line for f in result.failures if f.csv_line > 1})
    lines = [f"manifest validation failed: {len(result.failures)} problem(s) in {rows} row(s) "
             f"(CSV line numbers count the header as line 1; report: {result.report_md})"]
    lines += [f"  {f.describe()}" for f in result.failures]
    raise ManifestValidationError("\n".join(lines), result.failures)


# --------------------------------------------------------------------------- reports

def _summary(df: pd.DataFrame, manifest_path: Path, splits: list[str], min_duration_s: float,
             ok: bool, failures: list[Failure]) -> dict[str, Any]:
    per_split: dict[str, dict[str, Any]] = {}
    if "split" in df:
        for name, rows in df.groupby(df["split"].fillna("(empty)"), sort=False):
            works = rows["work_id"].nunique() if "work_id" in rows else None
            per_split[str(name)] = {
                "recordings": int(len(rows)), "works": None if works is None else int(works),
                "hours": round(float(rows["measured_duration_s"].sum()) / 3600, 3)}
    return {
        "manifest": str(manifest_path.resolve()),
        "ok": ok,
        "rows": int(len(df)),
        "bad_rows": len({f.csv_line for f in failures if f.csv_line > 1}),
        "problems": len(failures),
        "splits_allowed": splits,
        "min_duration_s": float(min_duration_s),
        "per_split": per_split,
        "line_numbers": "csv_line is 1-based and the header is line 1 (what an editor shows)",
    }


def _write_json(result: ValidationResult, summary: dict[str, Any]) -> None:
    import great_expectations as gx  # already imported by _run_suite

    by_check: dict[str, list[dict[str, Any]]] = {}
    for f in result.failures:
        d = asdict(f)
        d.pop("check")
        by_check.setdefault(f.check, []).append(d)
    doc = {
        **summary,
        "great_expectations_version": gx.__version__,
        "timings_s": {k: round(v, 3) for k, v in result.timings_s.items()},
        "expectations": [
            {"name": c.name, "expectation": c.expectation, "description": c.description,
             "success": c.success, "skipped": c.skipped, "failed_rows": c.n_failed,
             "failures": by_check.get(c.name, [])}
            for c in result.checks],
    }
    result.report_json.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _write_md(result: ValidationResult, summary: dict[str, Any]) -> None:
    out = ["# Manifest validation", "", f"Manifest: `{summary['manifest']}`", ""]
    if result.ok:
        out += [f"**PASS**: all {summary['rows']} recordings passed "
                f"{sum(c.success is True for c in result.checks)} checks.", ""]
    else:
        out += [f"**FAIL**: {summary['problems']} problem(s) in {summary['bad_rows']} row(s) "
                f"of {summary['rows']}. Nothing was removed: fix the rows below and run "
                "again. Line numbers count the header as line 1.", ""]
    out += ["| split | recordings | works | hours |", "|---|---:|---:|---:|"]
    for name, s in summary["per_split"].items():
        out.append(f"| {_cell(name)} | {s['recordings']} | {s['works']} | {s['hours']} |")
    out += ["", "| check | result | failed rows |", "|---|---|---:|"]
    for c in result.checks:
        state = {True: "pass", False: "**FAIL**", None: f"skipped ({c.skipped})"}[c.success]
        out.append(f"| {_cell(c.description)} | {state} | {c.n_failed} |")
    if result.failures:
        out += ["", "## Failures", "",
                "| line | recording_id | check | value | problem | fix |",
                "|---:|---|---|---|---|---|"]
        for f in result.failures:
            out.append(f"| {f.csv_line} | {_cell(f.recording_id)} | {f.check} | "
                       f"{_cell(f.value)} | {_cell(f.problem)} | {_cell(f.fix)} |")
    result.report_md.write_text("\n".join(out) + "\n")
