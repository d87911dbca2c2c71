"""DVC stage `validate`: the Great Expectations suite over the manifest.

Writes `reports/validation.json` (machine-readable) and `reports/validation.md` (human),
then stops the pipeline with a message naming each bad row and its fix. On success it
writes the validated manifest (every row, with measured durations) for the later stages.
"""
from __future__ import annotations

from pathlib import Path

from coverhunter.catalogue.validation import raise_for_failures, validate_manifest
from coverhunter.pipeline.layout import PARAMS, REPORTS, VALIDATED, load


def run(params_path: str | Path = PARAMS, progress: bool = True) -> dict:
    p, _ = load(params_path)
    d = p.data
    result = validate_manifest(d.manifest, d.splits, d.train_split, d.test_sets,
                               min_duration_s=p.train.chunk_s, report_dir=REPORTS,
                               min_rms_dbfs=d.min_rms_dbfs, progress=progress)
    raise_for_failures(result)
    VALIDATED.parent.mkdir(parents=True, exist_ok=True)
    result.manifest.to_parquet(VALIDATED, index=False)
    counts = result.manifest.groupby("split")["recording_id"].count().to_dict()
    return {"rows": len(result.manifest), "per_split": counts, "report": str(result.report_md)}
