"""Rendering a version: its recipe played (intro, arranged body, outro), assembled, then
the tone control, compressor, room, added noise and the final loudness applied.

A melody-only version on the default soundfont is played exactly as before bands
existed (one program through :func:`~coverhunter.demo.render.render_score`); any other
version is a set of :class:`~coverhunter.demo.render.Track` s (melody, chord parts, bass,
drums) played together by :func:`~coverhunter.demo.render.render_tracks`.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from coverhunter.demo.accompany import accompany
from coverhunter.demo.arrange import arrange, pass_plan, place, section_bounds, split_at
from coverhunter.demo.midi import notes_to_midi
from coverhunter.demo.recipe import DEFAULT_SOUNDFONT_NAME, Recipe, samples
from coverhunter.demo.render import Track, render_score, render_tracks, soundfont_path
from coverhunter.demo.tune import Tune
from coverhunter.features import effects

__all__ = ["assemble", "band_tracks", "render_parts", "render_version"]


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` cropped or zero-padded to exactly ``n`` samples."""
    return x[:n] if x.size >= n else np.concatenate([x, np.zeros(n - x.size, x.dtype)])


def _is_classic(r: Recipe) -> bool:
    """The melody alone on the default soundfont: the original renderer."""
    return not r.is_band and r.soundfont == DEFAULT_SOUNDFONT_NAME


def band_tracks(r: Recipe, tune: Tune, length_s: float, n_sections: int,
                cut: tuple[int, int] | None = None, repeat: tuple[int, int] | None = None,
                tacet: tuple[int, int] | None = None) -> list[Track]:
    """The parts of ``tune`` arranged for ``length_s`` seconds of tune time (sections,
    passes, ``cut``, ``repeat``): the melody (``melody_octave`` octaves away, silent in
    the ``tacet`` piece) and, for a band, the chord parts, bass and drums of
    :func:`~coverhunter.demo.accompany.accompany`, which follow the same cuts and repeats.
    """
    plan, _ = pass_plan(tune, length_s, n_sections, cut, repeat)
    melody = tune.notes.copy()
    melody[:, 2] += 12 * r.melody_octave
    if not r.is_band:
        return [Track(place(melody, plan, length_s), r.program)]
    styles = r.style.split("+")
    levels = [float(v) for v in r.mix_db.split(";")]
    programs = [int(v) for v in r.accomp_programs.split(";")]
    parts = accompany(tune, styles, r.bass, r.drums, r.harmony == "half")
    bounds = section_bounds(tune, n_sections)
    tracks = [Track(place(melody, plan, length_s, skip=tacet), r.program, levels[0])]
    for i in range(len(styles)):
        tracks.append(Track(place(split_at(parts[f"chords{i}"], bounds), plan, length_s),
                            programs[i], levels[1 + i]))
    level = iter(levels[1 + len(styles):])
    if r.bass:
        tracks.append(Track(place(split_at(parts["bass"], bounds), plan, length_s),
                            programs[len(styles)], next(level)))
    if r.drums:
        tracks.append(Track(place(parts["drums"], plan, length_s), 0, next(level), drums=True))
    return tracks


def _render(r: Recipe, tune: Tune, length_s: float, n_samples: int, n_sections: int,
            sample_rate: int, cut: tuple[int, int] | None = None,
            repeat: tuple[int, int] | None = None,
            tacet: tuple[int, int] | None = None) -> np.ndarray:
    """``tune`` arranged for ``length_s`` s of tune time, played with the version's
    instruments, key and tempo: exactly ``n_samples``."""
    if n_samples <= 0:
        return np.zeros(0, np.float32)
    if _is_classic(r):
        notes, _ = arrange(tune, length_s, n_sections, cut, repeat)
        if notes.size == 0:
            return np.zeros(n_samples, np.float32)
        audio = render_score(notes_to_midi(notes), sample_rate, program=r.program,
                             soundfont=soundfont_path(r.soundfont), transpose=r.transpose,
                             tempo_scale=r.tempo, tail_s=0.0)
        return _fit(audio, n_samples)
    tracks = band_tracks(r, tune, length_s, n_sections, cut, repeat, tacet)
    return render_tracks(tracks, sample_rate, soundfont_path(r.soundfont), r.transpose,
                         r.tempo, n_samples=n_samples)


def render_parts(r: Recipe, tunes: Mapping[str, Tune],
                 sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The dry ``(intro, body, outro)`` of a version, each mono float32 at ``sample_rate``.

    The body is the work's tune arranged (passes, cut, repeat) and played with the
    version's instruments, key and tempo; intro and outro are the unrelated filler tunes
    played the same way (by the same band). Lengths are exactly ``round(intro_s·sr)``,
    the rest, and ``round(outro_s·sr)`` samples. Edges get short fades; the last part
    fades out.
    """
    n_intro, n_outro = samples(r.intro_s, sample_rate), samples(r.outro_s, sample_rate)
    n_body = samples(r.duration_s, sample_rate) - n_intro - n_outro
    cut = (r.cut_pass, r.cut_section) if r.cut_pass >= 0 else None
    rep = (r.repeat_pass, r.repeat_section) if r.repeat_pass >= 0 else None
    tacet = (r.tacet_pass, r.tacet_section) if r.tacet_pass >= 0 else None
    body = _render(r, tunes[r.source], n_body / sample_rate * r.tempo, n_body, r.sections,
                   sample_rate, cut, rep, tacet)
    body = effects.fade(body, sample_rate, out_s=r.edge_fade_s if n_outro else r.fade_out_s)
    intro = outro = np.zeros(0, np.float32)
    if n_intro:
        intro = _render(r, tunes[r.intro_source], r.intro_s * r.tempo, n_intro, 1, sample_rate)
        intro = effects.fade(intro, sample_rate, out_s=r.edge_fade_s)
    if n_outro:
        outro = _render(r, tunes[r.outro_source], r.outro_s * r.tempo, n_outro, 1, sample_rate)
        outro = effects.fade(outro, sample_rate, in_s=r.edge_fade_s, out_s=r.fade_out_s)
    return intro, body, outro


def assemble(intro: np.ndarray, body: np.ndarray, outro: np.ndarray) -> np.ndarray:
    """``intro + body + outro`` end to end: the body starts at sample ``len(intro)``."""
    return np.concatenate([intro, body, outro]).astype(np.float32)


def render_version(r: Recipe, tunes: Mapping[str, Tune], sample_rate: int) -> np.ndarray:
    """The finished recording: :func:`render_parts`, assembled, then the tone control
    (shelving EQ), the compressor, the room (reverb), added coloured noise at ``snr_db``
    and the final peak level ``gain_db`` (dBFS)."""
    x = assemble(*render_parts(r, tunes, sample_rate))
    rng = np.random.default_rng(r.effects_seed)
    if r.eq_low_db or r.eq_high_db:
        x = effects.shelf_eq(x, sample_rate, r.eq_low_db, r.eq_high_db)
    if r.comp_ratio > 1.0:
        x = effects.compress(effects.peak_normalise(x), sample_rate, r.comp_threshold_db,
                             r.comp_ratio)
    if r.reverb_rt60 > 0:
        x = effects.reverb(x, sample_rate, r.reverb_rt60, r.reverb_wet, rng)
    if r.snr_db is not None:
        noise = effects.coloured_noise(x.size, r.noise_exponent or 0.0, rng)
        x = effects.mix_at_snr(effects.peak_normalise(x), noise, r.snr_db)
    return effects.gain_db(effects.peak_normalise(x, 1.0), r.gain_db)
