"""DVC stage `demo`: render the embedded demo catalogue (music21 corpus tunes as covers).

Writes `data/demo/manifest.csv` and `data/demo/audio/*.flac`; versions whose recipe did not
change are reused. `demo.size: tiny` builds the small catalogue the tests use;
`demo.size: large` a training catalogue of band covers (in its own folder,
`demo.large.out_dir`).
"""
from __future__ import annotations

from pathlib import Path

from coverhunter.demo import build_catalogue, demo_params, reference_params
from coverhunter.pipeline.layout import PARAMS, load


def run(params_path: str | Path = PARAMS) -> dict:
    p, raw = load(params_path)
    dp = demo_params(raw)
    df = build_catalogue(dp, p.features.sample_rate, dp.out_dir, reference_params(raw))
    return {"recordings": len(df), "works": int(df["work_id"].nunique()),
            "hours": round(float(df["duration_s"].sum()) / 3600, 2),
            "rendered": df.attrs["rendered"], "reused": df.attrs["reused"],
            "works_per_split": df.groupby("split")["work_id"].nunique().to_dict()}
