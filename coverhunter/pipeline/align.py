"""DVC stage `align` [II-D finding aligned chunks]: embed every training recording's 15 s
grid chunks (7.5 s hop) with the coarse model and align each pair of versions of a work.

Writes `artifacts/align/alignments.parquet` (one row per aligned chunk pair),
`artifacts/align/pairs.parquet` (every pair of versions: matches, Δ, aligned count, or
why it has none; and how many of its aligned chunk pairs are right),
`artifacts/align/alignment.png` (Fig. 2a for a sample pair) and the summary
`reports/align.json`; logs them to MLflow. On the demo catalogue, whose manifest records
how each version was made, the summary's `truth_*` numbers say how right the alignment is
(coverhunter/align/truth.py); on other catalogues they are null. With
`fine.enabled: false` it writes empty tables marked as skipped, and train_fine
does not train.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from coverhunter.align.alignment import (
    ALIGNMENT_COLUMNS,
    SUMMARY_COLUMNS,
    WorkChunks,
    align_catalogue,
    embed_grid_chunks,
)
from coverhunter.align.truth import (
    PAIR_TRUTH_COLUMNS,
    Timeline,
    demo_section_bounds,
    has_truth_columns,
    judge,
    manifest_timelines,
)
from coverhunter.features.chunking import seconds_to_frames
from coverhunter.features.extract import load_features, read_index
from coverhunter.mlops import tracking
from coverhunter.model.checkpoint import load_model, resolve_device
from coverhunter.pipeline.layout import ALIGN, FEATURES, MODELS, PARAMS, REPORTS, load, validated_manifest, write_json
from coverhunter.reporting.plots import plot_alignment

SECTIONS = ("features", "align", "train", "fine")   # train: chunk_s, hop_s, device; fine: enabled
ALIGNMENTS = ALIGN / "alignments.parquet"
PAIRS = ALIGN / "pairs.parquet"
PICTURE = ALIGN / "alignment.png"
SUMMARY = REPORTS / "align.json"


def summarise(pairs: pd.DataFrame, alignments: pd.DataFrame, n_works: int) -> dict:
    """Counts a user checks first: how many version pairs found an offset, and how many
    aligned chunk pairs the fine model gets."""
    aligned = pairs[pairs["aligned"] > 0]
    return {"works": n_works, "version_pairs": len(pairs), "pairs_aligned": len(aligned),
            "pairs_aligned_share": len(aligned) / len(pairs) if len(pairs) else 0.0,
            "works_aligned": int(aligned["work_id"].nunique()),
            "aligned_chunk_pairs": len(alignments),
            "matches": int(pairs["matches"].sum()),
            # share of all chunk pairs above the threshold: near 1 means the coarse model
            # does not tell chunks apart and align.threshold is too low for it
            "match_density": float(pairs["matches"].sum()
                                   / (pairs["n_chunks_a"] * pairs["n_chunks_b"]).sum())
            if len(pairs) else 0.0,
            "mean_aligned_similarity": float(alignments["similarity"].mean()) if len(alignments) else 0.0,
            "pairs_nonzero_delta": int((aligned["delta"] != 0).sum())}


def timelines(df: pd.DataFrame, manifest_path: str | Path, raw: dict) -> dict[str, Timeline]:
    """The ground-truth timelines of the manifest's recordings (coverhunter/align/truth.py):
    only for a demo manifest (the recipe columns, the demo build's tune cache beside it and
    the `demo.sections` it was cut with); empty otherwise, and the truth is then null.
    (A change of `demo.sections` changes every recipe hash, hence the validated manifest,
    so DVC reruns this stage without declaring it.)"""
    sections = (raw.get("demo") or {}).get("sections")
    cache = Path(manifest_path).parent / "cache"
    if not has_truth_columns(df) or not isinstance(sections, int) or not cache.is_dir():
        return {}
    sources = df["source"].dropna().astype(str).unique().tolist()
    return manifest_timelines(df, demo_section_bounds(cache, sources, sections))


MIN_DRAWN_ALIGNED = 3   # aligned chunk pairs a drawn pair needs (a diagonal, not a dot)


def sample_pair(pairs: pd.DataFrame) -> pd.Series | None:
    """The pair to draw: the clearest alignment, i.e. the largest share of its matches on
    the Δ diagonal, among pairs with a few aligned chunks, preferring a non-zero offset
    (it shows Δ); ties go to more aligned chunks."""
    aligned = pairs[pairs["aligned"] > 0].assign(
        clarity=lambda d: d["aligned"] / d["matches"])
    if aligned.empty:
        return None
    for pool in (aligned[(aligned["aligned"] >= MIN_DRAWN_ALIGNED) & (aligned["delta"] != 0)],
                 aligned[aligned["aligned"] >= MIN_DRAWN_ALIGNED], aligned):
        if len(pool):
            return pool.sort_values(["clarity", "aligned", "rec_a", "rec_b"],
                                    ascending=[False, False, True, True]).iloc[0]


def run(params_path: str | Path = PARAMS, progress: bool = True) -> dict:
    p, raw = load(params_path)
    ALIGN.mkdir(parents=True, exist_ok=True)
    used = {s: raw[s] for s in SECTIONS}
    if not p.fine.enabled:
        pd.DataFrame(columns=ALIGNMENT_COLUMNS).to_parquet(ALIGNMENTS)
        pd.DataFrame(columns=SUMMARY_COLUMNS + PAIR_TRUTH_COLUMNS).to_parquet(PAIRS)
        PICTURE.unlink(missing_ok=True)
        summary = {"skipped": True, "reason": "fine.enabled is false"}
        write_json(SUMMARY, summary)
        return summary

    df = validated_manifest()
    df = df[df["split"] == p.data.train_split].sort_values(["work_id", "recording_id"])
    ids = df["recording_id"].tolist()
    feats = load_features(FEATURES, ids, read_index(FEATURES))
    model = load_model(MODELS / "coarse" / "model.pt")
    emb, starts = embed_grid_chunks(model, feats, p.train.chunk_s, p.train.hop_s,
                                    p.features.frame_rate, p.align.batch_chunks,
                                    resolve_device(p.train.device), progress=progress)
    by_id = dict(zip(ids, zip(emb, starts)))
    works = {w: WorkChunks(g["recording_id"].tolist(),
                           [by_id[r][0] for r in g["recording_id"]],
                           [by_id[r][1] for r in g["recording_id"]])
             for w, g in df.groupby("work_id", sort=True)}
    alignments, pairs = align_catalogue(works, p.align.threshold, progress=progress,
                                        min_votes=p.align.min_votes)
    hop = seconds_to_frames(p.train.hop_s, p.features.frame_rate) / p.features.frame_rate
    _, pair_truth, truth = judge(alignments, pairs, timelines(df, p.data.manifest, raw), hop)
    pairs = pd.concat([pairs, pair_truth], axis=1)
    alignments.to_parquet(ALIGNMENTS)
    pairs.to_parquet(PAIRS)
    summary = {**summarise(pairs, alignments, len(works)), **truth}
    write_json(SUMMARY, summary)

    PICTURE.unlink(missing_ok=True)
    pick = sample_pair(pairs)
    tracking.configure(Path.cwd())
    with tracking.stage_run("align", tracking.pipeline_key(raw), used):
        tracking.log({k: v for k, v in summary.items() if v is not None}, [SUMMARY, PAIRS])
        if pick is not None:
            a, b = by_id[pick["rec_a"]][0], by_id[pick["rec_b"]][0]       # (n_a, D), (n_b, D)
            plot_alignment(a @ b.T, p.align.threshold, int(pick["delta"]), PICTURE,
                           f"work {pick['work_id']}: {pick['rec_a']} vs {pick['rec_b']} "
                           f"({pick['matches']} matches, {pick['aligned']} aligned)", hop)
            tracking.log(artifacts=[PICTURE])
    return summary
