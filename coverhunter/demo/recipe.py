"""The recipe of one version: everything that decides its audio, and the hash that keys
its rendered FLAC (so a changed recipe, or changed rendering code, renders it again)."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import music21

from coverhunter.demo import render
from coverhunter.demo.parse import EXTRACT_VERSION
from coverhunter.demo.render import soundfont_path
from coverhunter.features import effects

__all__ = ["DEFAULT_SOUNDFONT_NAME", "MELODY", "Recipe", "code_digest", "samples"]

MELODY = "melody"  # the style of a version that is the melody alone
DEFAULT_SOUNDFONT_NAME = "timgm6mb"  # render.DEFAULT_SOUNDFONT, the bank of the first demo


@dataclass(frozen=True)
class Recipe:
    """Everything that decides one version's audio (and its manifest row).

    Times are seconds of the finished recording. The work's tune starts at ``intro_s``
    (sample ``round(intro_s · sr)``, see :func:`samples`) and is played ``n_passes``
    times (the last pass cut short by the recording's end) at ``tempo`` × the score's
    tempo, ``transpose`` semitones away, on General MIDI ``program`` (the melody's
    instrument) of the ``soundfont`` (a name of :data:`coverhunter.demo.render.SOUNDFONTS`).
    ``cut_pass``/``cut_section``: that section (of
    :func:`~coverhunter.demo.arrange.section_bounds` with ``sections``) is left out of that
    pass (0-based; -1: no cut); ``repeat_pass``/``repeat_section``: played twice.
    ``intro_source`` / ``outro_source``: the unrelated corpus tune of the intro / outro
    ("" when none). ``reverb_rt60 = 0``: dry; ``snr_db = None``: no added noise
    (``noise_exponent``: its colour). ``gain_db`` is the recording's final peak level in dBFS.

    The band (:mod:`~coverhunter.demo.accompany`; intro and outro are played by the same
    band): ``style`` is ``"melody"`` for the melody alone, else the chord parts' styles
    joined by ``+`` (``"strum+pad"``); ``harmony`` ``bar`` or ``half`` (chord changes);
    ``bass`` and ``drums`` the bass style and drum pattern ("" for none);
    ``melody_octave`` the melody's octave shift; ``accomp_programs`` the General MIDI
    programs of the chord parts, then of the bass, joined by ``;``; ``mix_db`` the part
    levels (dB) of the melody, the chord parts, the bass and the drums, those present,
    joined by ``;``. ``tacet_pass``/``tacet_section``: that section of that pass is played
    without the melody (-1: none). ``eq_low_db``/``eq_high_db``: shelving EQ (0: flat);
    ``comp_ratio`` > 1: a compressor at ``comp_threshold_db`` below the peak.
    """
    recording_id: str
    work_id: str
    split: str
    title: str
    source: str
    program: int
    transpose: int
    tempo: float
    duration_s: float
    n_passes: int
    cut_pass: int
    cut_section: int
    repeat_pass: int
    repeat_section: int
    intro_s: float
    intro_source: str
    outro_s: float
    outro_source: str
    reverb_rt60: float
    reverb_wet: float
    snr_db: float | None
    noise_exponent: float | None
    gain_db: float
    sections: int
    fade_out_s: float
    edge_fade_s: float
    effects_seed: int
    soundfont: str = DEFAULT_SOUNDFONT_NAME
    style: str = MELODY
    harmony: str = ""
    bass: str = ""
    drums: str = ""
    melody_octave: int = 0
    accomp_programs: str = ""
    mix_db: str = ""
    tacet_pass: int = -1
    tacet_section: int = -1
    eq_low_db: float = 0.0
    eq_high_db: float = 0.0
    comp_ratio: float = 1.0
    comp_threshold_db: float = 0.0

    @property
    def is_band(self) -> bool:
        """True when the version is a band arrangement (not the melody alone)."""
        return self.style != MELODY

    def digest(self, sample_rate: int) -> str:
        """Hash of the recipe and everything else that shapes its audio: the sample rate,
        the soundfont file, the music21 version and the source of the rendering modules
        (so an edit to them renders every version again)."""
        font = soundfont_path(self.soundfont)
        payload = {"recipe": dataclasses.asdict(self), "sample_rate": sample_rate,
                   "code": code_digest(), "extract_version": EXTRACT_VERSION,
                   "music21": music21.__version__, "soundfont": [
                       font.name, font.stat().st_size]}
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@functools.cache
def code_digest() -> str:
    """Hash of the code that turns a recipe into audio: every module of this package
    (sorted by name), then :mod:`coverhunter.features.effects` and :mod:`coverhunter.demo.render`."""
    package = sorted(Path(__file__).parent.glob("*.py"), key=lambda f: f.name)
    h = hashlib.sha256()
    for module_file in (*package, Path(effects.__file__), Path(render.__file__)):
        h.update(module_file.name.encode())
        h.update(module_file.read_bytes())
    return h.hexdigest()[:16]


def samples(seconds: float, sample_rate: int) -> int:
    """The number of samples of ``seconds`` at ``sample_rate`` (rounded to the nearest)."""
    return round(seconds * sample_rate)
