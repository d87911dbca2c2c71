"""Planning a work's versions: the random draws (instrument, key, tempo, length, edits,
intro/outro, room, noise, loudness) that make up each version's recipe."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from coverhunter.demo import seeds
from coverhunter.demo.arrange import arrange, section_bounds
from coverhunter.demo.params import DemoParams
from coverhunter.demo.recipe import samples
from coverhunter.demo.tune import Tune

__all__ = ["UNASSIGNED", "Work", "plan_work"]

UNASSIGNED = "?"  # intro_source / outro_source of a planned intro or outro, before its filler


@dataclass
class Work:
    """One work of the catalogue: its id, title, split and the corpus tune(s) it plays."""
    work_id: str
    title: str
    split: str
    settings: list[str]  # corpus refs of the tune (one, or several natural settings)


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float], digits: int) -> float:
    return round(float(rng.uniform(*lo_hi)), digits)


def plan_work(p: DemoParams, work: Work, tunes: Mapping[str, Tune],
              sample_rate: int) -> list[dict[str, Any]]:
    """Draw every version of one work: the keyword arguments of each version's
    :class:`~coverhunter.demo.recipe.Recipe`, fillers still unassigned
    (``intro_source`` / ``outro_source`` = :data:`UNASSIGNED` where there is one).

    Each work and version has its own random stream, keyed by the seed and the work's
    first setting, so adding works leaves the others' versions unchanged.
    """
    key = seeds.stable_int(work.settings[0])
    rng = seeds.rng(p.seed, seeds.WORK, key)
    n_versions = int(rng.integers(p.versions[0], p.versions[1] + 1))
    settings = [work.settings[i] for i in rng.permutation(len(work.settings))]
    if len(settings) > 1:  # every natural setting is heard (as far as versions allow)
        n_versions = max(n_versions, min(len(settings), p.versions[1]))
    programs = rng.choice(p.programs, size=n_versions, replace=len(p.programs) < n_versions)
    plans = []
    for k in range(n_versions):
        v = seeds.rng(p.seed, seeds.VERSION, key, k)
        source = settings[k % len(settings)]
        tune = tunes[source]
        duration = _uniform(v, p.duration_s, 2)
        transpose = int(v.integers(p.transpose[0], p.transpose[1] + 1))
        tempo = _uniform(v, p.tempo, 3)
        has_intro, intro = v.random() < p.p_intro, _uniform(v, p.intro_s, 2)
        has_outro, outro = v.random() < p.p_outro, _uniform(v, p.outro_s, 2)
        has_cut, cut_sec, cut_u = v.random() < p.p_cut, int(v.integers(p.sections)), v.random()
        has_rep, rep_sec, rep_u = v.random() < p.p_repeat, int(v.integers(p.sections)), v.random()
        has_reverb, rt60, wet = (v.random() < p.p_reverb, _uniform(v, p.rt60_s, 2),
                                 _uniform(v, p.reverb_wet, 2))
        has_noise, snr, exponent = (v.random() < p.p_noise, _uniform(v, p.snr_db, 2),
                                    _uniform(v, p.noise_exponent, 2))
        gain = _uniform(v, p.peak_db, 2)
        effects_seed = int(v.integers(2**62))

        intro = intro if has_intro else 0.0
        outro = outro if has_outro else 0.0
        n_body = (samples(duration, sample_rate) - samples(intro, sample_rate)
                  - samples(outro, sample_rate))
        body_tune_s = n_body / sample_rate * tempo
        full_passes = int(body_tune_s // tune.length_s)
        n_sec = section_bounds(tune, p.sections).size - 1
        cut = rep = None  # edits only where a whole pass fits, in one of the whole passes
        if full_passes and n_sec > 1:
            if has_cut and cut_sec < n_sec:
                cut = (int(cut_u * full_passes), cut_sec)
            if has_rep and rep_sec < n_sec and (int(rep_u * full_passes), rep_sec) != cut:
                rep = (int(rep_u * full_passes), rep_sec)
        _, n_passes = arrange(tune, body_tune_s, p.sections, cut, rep)
        plans.append(dict(
            recording_id=f"{work.work_id}-{k + 1:02d}", work_id=work.work_id, split=work.split,
            title=work.title, source=source, program=int(programs[k]), transpose=transpose,
            tempo=tempo, duration_s=duration, n_passes=n_passes,
            cut_pass=cut[0] if cut else -1, cut_section=cut[1] if cut else -1,
            repeat_pass=rep[0] if rep else -1, repeat_section=rep[1] if rep else -1,
            intro_s=intro, intro_source=UNASSIGNED if intro else "",
            outro_s=outro, outro_source=UNASSIGNED if outro else "",
            reverb_rt60=rt60 if has_reverb else 0.0, reverb_wet=wet if has_reverb else 0.0,
            snr_db=snr if has_noise else None, noise_exponent=exponent if has_noise else None,
            gain_db=gain, sections=p.sections, fade_out_s=p.fade_out_s,
            edge_fade_s=p.edge_fade_s, effects_seed=effects_seed))
    return plans
