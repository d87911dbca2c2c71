"""The catalogue manifest: one CSV row per recording (README: "Your own catalogue").

Columns: ``recording_id, work_id, audio_path, split`` are required; ``duration_s``,
``title``, ``artist`` and any other columns are optional and kept as they are.
``audio_path`` is relative to the manifest's folder (absolute paths are allowed too).

Every cell is read as a string (ids such as ``007`` stay ``"007"``), surrounding blanks
are stripped and an empty cell is ``None`` (object columns, so pandas 3 does not turn
``None`` into NaN). Two columns are added:

- ``csv_line``: the line of the row in the file, 1-based with the header on line 1, so
  ``csv_line`` is what an editor shows (``vim +LINE manifest.csv``). Blank lines are
  skipped but counted, so the number stays right after them.
- ``audio_file``: ``audio_path`` resolved to an absolute path (null where it is empty).

Reading never drops a row: a row with empty cells is kept (validation names it).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pandas as pd

REQUIRED_COLUMNS: tuple[str, ...] = ("recording_id", "work_id", "audio_path", "split")
OPTIONAL_COLUMNS: tuple[str, ...] = ("duration_s", "title", "artist")
ADDED_COLUMNS: tuple[str, ...] = ("csv_line", "audio_file")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file (and line or column)."""


def _clean(cell: str) -> str | None:
    cell = cell.strip()
    return cell if cell else None


# long on purpose: one check after another, each naming its row and fix
def read_manifest(path: str | Path, *, require_columns: bool = True) -> pd.DataFrame:
    """Read the manifest CSV at ``path`` into a DataFrame, one row per data line.

    Cells are strings or ``None``; ``duration_s`` (when present) is a float column.
    ``csv_line`` and ``audio_file`` are added (see the module notes). Raises
    :class:`ManifestError` naming the file for an unreadable CSV, a row with more cells
    than the header, a duplicated or reserved column name, a non-numeric ``duration_s``
    or (with ``require_columns``) a missing required column. Validation reads with
    ``require_columns=False`` so that a missing column is reported like every other check.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or not any(c.strip() for c in header):
                raise ManifestError(
                    f"{path}: the file is empty; line 1 must be a header with "
                    f"{', '.join(REQUIRED_COLUMNS)}")
            columns = [c.strip() for c in header]
            rows, lines = [], []
            start = reader.line_num + 1
            for cells in reader:
                if cells:  # a blank line gives no cells
                    if len(cells) > len(columns):
                        raise ManifestError(
                            f"{path}, line {start}: {len(cells)} cells but the header has "
                            f"{len(columns)} columns; quote cells that contain commas")
                    cells = cells + [""] * (len(columns) - len(cells))
                    rows.append([_clean(c) for c in cells])
                    lines.append(start)
                start = reader.line_num + 1
    except (csv.Error, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: not a readable UTF-8 CSV file ({err})") from err

    blank = [i + 1 for i, c in enumerate(columns) if not c]
    if blank:
        raise ManifestError(f"{path}, line 1: header cell(s) {blank} are empty; name every column")
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise ManifestError(f"{path}, line 1: column(s) {', '.join(dup)} appear more than once")
    reserved = [c for c in ADDED_COLUMNS if c in columns]
    if reserved:
        raise ManifestError(
            f"{path}, line 1: column(s) {', '.join(reserved)} are reserved (added when "
            "reading); rename them")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing and require_columns:
        raise ManifestError(
            f"{path}, line 1: missing required column(s) {', '.join(missing)} "
            f"(header has: {', '.join(columns)}); the manifest needs "
            f"{', '.join(REQUIRED_COLUMNS)}")

    df = pd.DataFrame(rows, columns=columns, dtype=object)
    if "duration_s" in df:
        numbers = pd.to_numeric(df["duration_s"], errors="coerce")
        bad = df["duration_s"].notna() & numbers.isna()
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise ManifestError(
                f"{path}, line {lines[i]}: duration_s {df['duration_s'].iloc[i]!r} is not a "
                "number of seconds; fix it or leave the cell empty")
        df["duration_s"] = numbers.astype(float)
    df["csv_line"] = pd.Series(lines, dtype="int64")
    base = path.resolve().parent
    if "audio_path" in df:
        df["audio_file"] = pd.Series([None if p is None else os.path.normpath(base / p)
                                      for p in df["audio_path"]], dtype=object)
    else:
        df["audio_file"] = pd.Series([None] * len(df), dtype=object)
    return df


def recordings_in(df: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of one split, in manifest order (the index is kept)."""
    return df[df["split"] == split]


def works_in(df: pd.DataFrame, split: str) -> list[str]:
    """The distinct work ids of one split, sorted."""
    return sorted(set(recordings_in(df, split)["work_id"].dropna()))


def work_labels(df: pd.DataFrame) -> dict[str, int]:
    """Work id → class index 0..n-1 (sorted ids, so the mapping is reproducible)."""
    return {work: i for i, work in enumerate(sorted(set(df["work_id"].dropna())))}
