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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coverhunter.catalogue.checks import Check, Facts, build_checks
from coverhunter.catalogue.manifest import REQUIRED_COLUMNS, ManifestError, read_manifest
from coverhunter.catalogue.probe import COMPUTED_COLUMNS, add_computed_columns


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


# --------------------------------------------------------------------------- GX

def _run_suite(df: pd.DataFrame, checks: list[Check], runnable: set[str],
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

# long on purpose: the suite's steps in order, each timed
def validate_manifest(manifest_path: str | Path, splits: list[str], train_split: str,
                      test_sets: list[str], min_duration_s: float, report_dir: str | Path,
                      *, duration_key: str = "train.chunk_s", min_rms_dbfs: float = -60.0,
                      workers: int | None = None, progress: bool = True) -> ValidationResult:
    """Validate the manifest at ``manifest_path`` and write the two reports to ``report_dir``.

    ``splits`` is every allowed split name (``DataParams.splits``), ``train_split`` and
    ``test_sets`` come from ``params.data``, ``min_duration_s`` is the params key
    ``duration_key`` (``train.chunk_s`` for a training catalogue), and a recording whose
    RMS level is under ``min_rms_dbfs`` (``data.min_rms_dbfs``) is refused as silent.
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

    checks = build_checks(splits, train_split, test_sets, min_duration_s, duration_key,
                          min_rms_dbfs)
    runnable = {c.name for c in checks if all(col in df for col in c.needs)}
    gx_results, gx_types = _run_suite(df, checks, runnable, timings)

    facts = Facts(df, splits, train_split, test_sets, float(min_duration_s), duration_key,
                  float(min_rms_dbfs))
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
                                         _json_scalar(value), problem, fix))
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


def _table_failure(check: Check, df: pd.DataFrame) -> Failure:
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


def _json_scalar(value: Any) -> Any:
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
