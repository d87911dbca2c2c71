"""Planning a work's versions: the random draws (instrument, key, tempo, length, edits,
intro/outro, room, noise, loudness, and the soundfont and band arrangement) that make up
each version's recipe."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from coverhunter.demo import seeds
from coverhunter.demo.arrange import arrange, section_bounds
from coverhunter.demo.params import MIX_PARTS, DemoParams
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


def _pick(rng: np.random.Generator, items: list[Any]) -> Any:
    """One of ``items``, from exactly one draw whatever their number (so a longer or
    shorter list in the parameters leaves the later draws as they were)."""
    return items[min(int(rng.random() * len(items)), len(items) - 1)]


_MELODY_RANGE = (55, 84)  # G3-C6: where a band's melody (median pitch) is moved octaves to


def _arrangement(p: DemoParams, a: np.random.Generator, tune: Tune, full_passes: int,
                 n_sec: int, cut: tuple[int, int] | None, split: str) -> dict[str, Any]:
    """The soundfont and band draws of one version of a work of ``split`` from its own
    stream ``a``: every value is drawn, in a fixed order, whether it is used or not (so one
    choice never shifts another, and a split's band probability changes no other split's
    versions). A melody-only version keeps the recipe's band defaults."""
    soundfont = _pick(a, p.soundfonts)
    band = a.random() < p.p_band_splits.get(split, p.p_band)
    styles = list(p.chord_styles)
    first = _pick(a, styles)
    others = [s for s in styles if s != first] or [first]
    has_second, second = a.random() < p.p_second_chords, _pick(a, others)
    first_prog, second_prog = _pick(a, p.chord_styles[first]), _pick(a, p.chord_styles[second])
    half = a.random() < p.p_half_bar
    has_bass, bass, bass_prog = (a.random() < p.p_bass, _pick(a, p.bass_styles),
                                 _pick(a, p.bass_programs))
    has_drums, drums = a.random() < p.p_drums, _pick(a, p.drum_patterns)
    octave = int(a.integers(p.melody_octave[0], p.melody_octave[1] + 1))
    has_tacet, tacet_sec, tacet_u = a.random() < p.p_tacet, int(a.integers(p.sections)), a.random()
    levels = {part: _uniform(a, p.mix_db[part], 1) for part in MIX_PARTS}
    second_level = _uniform(a, p.mix_db["chords"], 1)
    has_eq, eq_low, eq_high = a.random() < p.p_eq, _uniform(a, p.eq_db, 1), _uniform(a, p.eq_db, 1)
    has_comp, ratio, threshold = (a.random() < p.p_compress, _uniform(a, p.comp_ratio, 1),
                                  _uniform(a, p.comp_threshold_db, 1))
    if not band:
        return {"soundfont": soundfont}
    chord_styles = [first, second] if has_second and second != first else [first]
    programs = [first_prog, second_prog][:len(chord_styles)]
    mix = [levels["melody"], levels["chords"], second_level][:1 + len(chord_styles)]
    if has_bass:
        programs.append(bass_prog)
        mix.append(levels["bass"])
    if has_drums:
        mix.append(levels["drums"])
    median = float(np.median(tune.notes[:, 2]))
    while octave > 0 and median + 12 * octave > _MELODY_RANGE[1]:
        octave -= 1
    while octave < 0 and median + 12 * octave < _MELODY_RANGE[0]:
        octave += 1
    tacet = None
    if has_tacet and full_passes and n_sec > 1 and tacet_sec < n_sec:
        tacet = (int(tacet_u * full_passes), tacet_sec)
        if tacet == cut:
            tacet = None
    return dict(
        soundfont=soundfont, style="+".join(chord_styles), harmony="half" if half else "bar",
        bass=bass if has_bass else "", drums=drums if has_drums else "",
        melody_octave=octave, accomp_programs=";".join(map(str, programs)),
        mix_db=";".join(f"{v + 0.0:g}" for v in mix),  # + 0.0: no "-0"
        tacet_pass=tacet[0] if tacet else -1, tacet_section=tacet[1] if tacet else -1,
        eq_low_db=eq_low if has_eq else 0.0, eq_high_db=eq_high if has_eq else 0.0,
        comp_ratio=ratio if has_comp else 1.0, comp_threshold_db=threshold if has_comp else 0.0)


# long on purpose: the order of the random draws is the seed contract: reordering them changes every catalogue
def plan_work(p: DemoParams, work: Work, tunes: Mapping[str, Tune],
              sample_rate: int) -> list[dict[str, Any]]:
    """Draw every version of one work: the keyword arguments of each version's
    :class:`~coverhunter.demo.recipe.Recipe`, fillers still unassigned
    (``intro_source`` / ``outro_source`` = :data:`UNASSIGNED` where there is one).

    Each work and version has its own random stream, keyed by the seed and the work's
    first setting, so adding works leaves the others' versions unchanged; the soundfont
    and the band arrangement come from a stream of their own (``seeds.ARRANGEMENT``).
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
        band = _arrangement(p, seeds.rng(p.seed, seeds.ARRANGEMENT, key, k), tune,
                            full_passes, n_sec, cut, work.split)
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
            edge_fade_s=p.edge_fade_s, effects_seed=effects_seed, **band))
    return plans
