"""Building the catalogue: select, plan, render what is missing, write the manifest."""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pandas as pd

from coverhunter.demo.params import DemoParams
from coverhunter.demo.plan import UNASSIGNED, plan_work
from coverhunter.demo.recipe import Recipe, samples
from coverhunter.demo.render import soundfont_path
from coverhunter.demo.render_cache import is_cached, render_job
from coverhunter.demo.runner import Runner
from coverhunter.demo.selection import barred_tunes, select_works, take_fillers
from coverhunter.demo.tune_store import TuneStore
from coverhunter.progress import track

__all__ = ["MANIFEST_COLUMNS", "build_catalogue"]

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = (
    "recording_id", "work_id", "audio_path", "split", "duration_s", "title",
    # ground truth of how the version was made (see Recipe)
    "source", "program", "transpose", "tempo", "n_passes", "cut_pass", "cut_section",
    "repeat_pass", "repeat_section", "intro_s", "intro_source", "outro_s", "outro_source",
    "reverb_rt60", "reverb_wet", "snr_db", "noise_exponent", "gain_db",
    # the soundfont and the band (style "melody": the melody alone; see Recipe)
    "soundfont", "style", "harmony", "bass", "drums", "melody_octave", "accomp_programs",
    "mix_db", "tacet_pass", "tacet_section", "eq_low_db", "eq_high_db", "comp_ratio",
    "comp_threshold_db", "recipe_hash",
)


# long on purpose: the builder's steps in order: select, plan, render (cached), write
def build_catalogue(p: DemoParams, sample_rate: int, out_dir: Path | str,
                    reference: DemoParams | None = None) -> pd.DataFrame:
    """Build (or bring up to date) the demo catalogue in ``out_dir`` and return its manifest.

    With ``p.exclude_splits``, ``reference`` (the ``full`` demo's parameters,
    :func:`~coverhunter.demo.params.reference_params`) is required: the tunes of those
    splits of its selection, and any tune like them (the melody and title dedupe), are
    never played, as works or as intro/outro material.

    Writes ``out_dir/audio/<recording_id>.flac`` (16-bit mono at ``sample_rate``) and
    ``out_dir/manifest.csv`` (columns :data:`MANIFEST_COLUMNS`; ``audio_path`` relative
    to the manifest). Parsed tunes are cached in ``out_dir/cache``; versions whose FLAC
    already carries their recipe hash are kept, and FLACs of versions no longer in the
    catalogue are removed. The returned frame is the manifest as read back from the CSV
    (empty text and missing numbers are NaN: ``intro_source`` without an intro,
    ``snr_db`` without noise). ``df.attrs`` holds ``rendered`` and ``reused`` counts.
    """
    out_dir = Path(out_dir)
    if p.exclude_splits and reference is None:
        raise ValueError(f"demo.exclude_splits = {p.exclude_splits}: pass the reference "
                         "(full demo) parameters to build_catalogue")
    for name in p.soundfonts:
        soundfont_path(name)  # fails now, with the install hint, not in a worker
    audio_dir = out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    runner = Runner(p.workers)
    try:
        store = TuneStore(out_dir / "cache", runner)
        batch = 8 * runner.workers
        try:
            barred = (barred_tunes(reference, p.exclude_splits, store, batch)
                      if p.exclude_splits and reference is not None else [])
            chosen = select_works(p, store, batch, barred)
            tunes = chosen.tunes
            plans = [plan for w in chosen.works
                     for plan in plan_work(p, w, tunes, sample_rate)]
            # fillers: one unrelated tune per intro/outro, each used once
            slots = [(i, k) for i, plan in enumerate(plans) for k in ("intro", "outro")
                     if plan[f"{k}_source"] == UNASSIGNED]
            fillers = take_fillers(store, chosen, len(slots), batch)
        finally:
            store.save()
        for (i, k), tune in zip(slots, fillers):
            plans[i][f"{k}_source"] = tune.ref
            tunes[tune.ref] = tune

        recipes = [Recipe(**plan) for plan in plans]
        rows, jobs = [], []
        for r in recipes:
            digest = r.digest(sample_rate)
            path = audio_dir / f"{r.recording_id}.flac"
            row = dataclasses.asdict(r)
            row.update(audio_path=f"audio/{path.name}", recipe_hash=digest)
            rows.append(row)
            if not is_cached(path, digest):
                needed = {s: tunes[s].to_json() for s in (r.source, r.intro_source,
                                                          r.outro_source) if s}
                jobs.append((dataclasses.asdict(r), needed, sample_rate, str(path), digest))
        for _ in track(runner.map(render_job, jobs), len(jobs), "demo: rendering", "version", bool(jobs)):
            pass
    finally:
        runner.close()

    keep = {f"{r.recording_id}.flac" for r in recipes}
    for stale in audio_dir.iterdir():
        if stale.is_file() and stale.name not in keep:
            stale.unlink()
    manifest = pd.DataFrame(rows)
    manifest["duration_s"] = [samples(r.duration_s, sample_rate) / sample_rate for r in recipes]
    tmp = out_dir / "manifest.csv.tmp"
    manifest[list(MANIFEST_COLUMNS)].to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, out_dir / "manifest.csv")
    manifest = pd.read_csv(out_dir / "manifest.csv")  # exactly what a reader of the file gets
    manifest.attrs.update(rendered=len(jobs), reused=len(recipes) - len(jobs))
    log.info("demo catalogue: %d works, %d versions (%d rendered, %d reused) in %s",
             manifest.work_id.nunique(), len(manifest), len(jobs), len(recipes) - len(jobs),
             out_dir)
    return manifest
