"""Rendering a version: its recipe played (intro, arranged body, outro), assembled, then
the room, added noise and the final loudness applied."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from coverhunter import effects
from coverhunter.demo.arrange import arrange
from coverhunter.demo.midi import notes_to_midi
from coverhunter.demo.recipe import Recipe, samples
from coverhunter.demo.tune import Tune
from coverhunter.render import render_score

__all__ = ["assemble", "render_parts", "render_version"]


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` cropped or zero-padded to exactly ``n`` samples."""
    return x[:n] if x.size >= n else np.concatenate([x, np.zeros(n - x.size, x.dtype)])


def _render_notes(notes: np.ndarray, n_samples: int, r: Recipe, sample_rate: int) -> np.ndarray:
    """``notes`` played with the version's program, key and tempo: exactly ``n_samples``."""
    if n_samples <= 0:
        return np.zeros(0, np.float32)
    if notes.size == 0:
        return np.zeros(n_samples, np.float32)
    audio = render_score(notes_to_midi(notes), sample_rate, program=r.program,
                         transpose=r.transpose, tempo_scale=r.tempo, tail_s=0.0)
    return _fit(audio, n_samples)


def render_parts(r: Recipe, tunes: Mapping[str, Tune],
                 sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The dry ``(intro, body, outro)`` of a version, each mono float32 at ``sample_rate``.

    The body is the work's tune arranged (passes, cut, repeat) and played with the
    version's program, key and tempo; intro and outro are the unrelated filler tunes
    played the same way. Lengths are exactly ``round(intro_s·sr)``, the rest, and
    ``round(outro_s·sr)`` samples. Edges get short fades; the last part fades out.
    """
    n_intro, n_outro = samples(r.intro_s, sample_rate), samples(r.outro_s, sample_rate)
    n_body = samples(r.duration_s, sample_rate) - n_intro - n_outro
    cut = (r.cut_pass, r.cut_section) if r.cut_pass >= 0 else None
    rep = (r.repeat_pass, r.repeat_section) if r.repeat_pass >= 0 else None
    body_notes, _ = arrange(tunes[r.source], n_body / sample_rate * r.tempo, r.sections, cut, rep)
    body = _render_notes(body_notes, n_body, r, sample_rate)
    body = effects.fade(body, sample_rate, out_s=r.edge_fade_s if n_outro else r.fade_out_s)
    intro = outro = np.zeros(0, np.float32)
    if n_intro:
        notes, _ = arrange(tunes[r.intro_source], r.intro_s * r.tempo, 1)
        intro = effects.fade(_render_notes(notes, n_intro, r, sample_rate), sample_rate,
                             out_s=r.edge_fade_s)
    if n_outro:
        notes, _ = arrange(tunes[r.outro_source], r.outro_s * r.tempo, 1)
        outro = effects.fade(_render_notes(notes, n_outro, r, sample_rate), sample_rate,
                             in_s=r.edge_fade_s, out_s=r.fade_out_s)
    return intro, body, outro


def assemble(intro: np.ndarray, body: np.ndarray, outro: np.ndarray) -> np.ndarray:
    """``intro + body + outro`` end to end: the body starts at sample ``len(intro)``."""
    return np.concatenate([intro, body, outro]).astype(np.float32)


def render_version(r: Recipe, tunes: Mapping[str, Tune], sample_rate: int) -> np.ndarray:
    """The finished recording: :func:`render_parts`, assembled, then the room (reverb),
    added coloured noise at ``snr_db`` and the final peak level ``gain_db`` (dBFS)."""
    x = assemble(*render_parts(r, tunes, sample_rate))
    rng = np.random.default_rng(r.effects_seed)
    if r.reverb_rt60 > 0:
        x = effects.reverb(x, sample_rate, r.reverb_rt60, r.reverb_wet, rng)
    if r.snr_db is not None:
        noise = effects.coloured_noise(x.size, r.noise_exponent or 0.0, rng)
        x = effects.mix_at_snr(effects.peak_normalise(x), noise, r.snr_db)
    return effects.gain_db(effects.peak_normalise(x, 1.0), r.gain_db)
