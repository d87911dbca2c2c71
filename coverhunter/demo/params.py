"""The demo's parameters: :class:`DemoParams`, the ``demo:`` section of ``params.yaml``.

:func:`demo_params` reads it (``full``, or the ``tiny`` or ``large`` preset) and checks
every value; :func:`reference_params` gives the ``full`` catalogue that a preset with
``exclude_splits`` keeps its distance from.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from coverhunter.demo.accompany import BASS_STYLES, CHORD_STYLES, DRUM_PATTERNS
from coverhunter.demo.names import RESERVED_COLLECTION, SOUNDFONT_NAMES
from coverhunter.params import dataclass, section

__all__ = ["MIX_PARTS", "PRESETS", "DemoParams", "demo_params", "reference_params"]

PRESETS = ("tiny", "large", "polyphonic", "homophonic")  # the sizes besides full: each overrides keys of the full set
MIX_PARTS = ("melody", "chords", "bass", "drums")  # the keys of demo.mix_db

_RANGES = ("versions", "pass_s", "duration_s", "transpose", "tempo", "intro_s", "outro_s",
           "rt60_s", "reverb_wet", "snr_db", "noise_exponent", "peak_db", "melody_octave",
           "eq_db", "comp_ratio", "comp_threshold_db")
_PROBABILITIES = ("p_cut", "p_repeat", "p_intro", "p_outro", "p_reverb", "p_noise", "p_band",
                  "p_second_chords", "p_half_bar", "p_bass", "p_drums", "p_tacet", "p_eq",
                  "p_compress")


def _gm_programs(programs: list[int]) -> bool:
    """A non-empty list of General MIDI programs (0-127)."""
    return bool(programs) and all(0 <= q <= 127 for q in programs)


@dataclass
class DemoParams:
    """The ``demo:`` section of ``params.yaml`` (every key documented there).

    Ranges are ``[low, high]`` pairs (inclusive for integers, uniform draws for floats).
    The sample rate is not here: it is ``features.sample_rate``, passed to
    :func:`~coverhunter.demo.catalogue.build_catalogue`.
    """
    out_dir: str
    seed: int
    workers: int
    collections: list[str]
    n_works: int
    n_variant_works: int
    versions: tuple[int, int]
    split_fractions: dict[str, float]
    variants_split: str
    min_notes: int
    pass_s: tuple[float, float]
    dedupe_ngram: int
    dedupe_threshold: float
    duration_s: tuple[float, float]
    programs: list[int]
    transpose: tuple[int, int]
    tempo: tuple[float, float]
    sections: int
    p_cut: float
    p_repeat: float
    p_intro: float
    intro_s: tuple[float, float]
    p_outro: float
    outro_s: tuple[float, float]
    p_reverb: float
    rt60_s: tuple[float, float]
    reverb_wet: tuple[float, float]
    p_noise: float
    snr_db: tuple[float, float]
    noise_exponent: tuple[float, float]
    peak_db: tuple[float, float]
    fade_out_s: float
    edge_fade_s: float
    # band arrangements (coverhunter.demo.accompany)
    p_band: float
    p_band_splits: dict[str, float]
    soundfonts: list[str]
    chord_styles: dict[str, list[int]]
    p_second_chords: float
    p_half_bar: float
    bass_styles: list[str]
    bass_programs: list[int]
    p_bass: float
    drum_patterns: list[str]
    p_drums: float
    melody_octave: tuple[int, int]
    p_tacet: float
    mix_db: dict[str, tuple[float, float]]
    p_eq: float
    eq_db: tuple[float, float]
    p_compress: float
    comp_ratio: tuple[float, float]
    comp_threshold_db: tuple[float, float]
    exclude_splits: list[str]

    def __post_init__(self) -> None:
        problems = []
        for name in _RANGES:
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or len(value) != 2 or value[0] > value[1]:
                problems.append(f"demo.{name} must be [low, high] with low <= high, got {value}")
            else:
                object.__setattr__(self, name, tuple(value))
        for name in _PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"demo.{name} must be a probability, got {getattr(self, name)}")
        if self.collections and RESERVED_COLLECTION in self.collections:
            problems.append("demo.collections may not name 'bach': the Bach chorales are "
                            "reserved for independent evaluation")
        if not self.split_fractions or abs(sum(self.split_fractions.values()) - 1.0) > 1e-6:
            problems.append(f"demo.split_fractions must sum to 1, got {self.split_fractions}")
        if self.variants_split in self.split_fractions:
            problems.append(f"demo.variants_split {self.variants_split!r} is also a key of "
                            "demo.split_fractions")
        if problems:  # the checks below read the ranges
            raise ValueError("params: " + "; ".join(problems))
        if self.versions[0] < 2:
            problems.append("demo.versions: a work needs at least 2 versions")
        if not self.programs or not all(0 <= p <= 127 for p in self.programs):
            problems.append(f"demo.programs must be General MIDI programs 0-127, "
                            f"got {self.programs}")
        if self.intro_s[1] + self.outro_s[1] >= self.duration_s[0]:
            problems.append("demo: the longest intro plus outro must be shorter than the "
                            "shortest version (duration_s)")
        if self.sections < 1 or self.n_works < 0 or self.n_variant_works < 0:
            problems.append("demo.sections must be >= 1 and the work counts >= 0")
        problems += self._band_problems()
        if problems:
            raise ValueError("params: " + "; ".join(problems))
        object.__setattr__(self, "collections", list(self.collections))
        object.__setattr__(self, "programs", list(self.programs))
        object.__setattr__(self, "split_fractions", dict(self.split_fractions))
        object.__setattr__(self, "p_band_splits", dict(self.p_band_splits))
        object.__setattr__(self, "soundfonts", list(self.soundfonts))
        object.__setattr__(self, "chord_styles",
                           {k: list(v) for k, v in self.chord_styles.items()})
        object.__setattr__(self, "bass_styles", list(self.bass_styles))
        object.__setattr__(self, "bass_programs", list(self.bass_programs))
        object.__setattr__(self, "drum_patterns", list(self.drum_patterns))
        object.__setattr__(self, "mix_db", {k: tuple(v) for k, v in self.mix_db.items()})
        object.__setattr__(self, "exclude_splits", list(self.exclude_splits))

    def _band_problems(self) -> list[str]:
        """What is wrong with the band-arrangement keys."""
        problems = []
        gm = _gm_programs
        if not self.soundfonts or not set(self.soundfonts) <= set(SOUNDFONT_NAMES):
            problems.append(f"demo.soundfonts must name some of {', '.join(SOUNDFONT_NAMES)}, "
                            f"got {self.soundfonts}")
        if (not self.chord_styles or not set(self.chord_styles) <= set(CHORD_STYLES)
                or not all(gm(v) for v in self.chord_styles.values())):
            problems.append(f"demo.chord_styles must map some of {', '.join(CHORD_STYLES)} "
                            f"to General MIDI programs, got {self.chord_styles}")
        if not self.bass_styles or not set(self.bass_styles) <= set(BASS_STYLES):
            problems.append(f"demo.bass_styles must be some of {', '.join(BASS_STYLES)}")
        if not gm(self.bass_programs):
            problems.append("demo.bass_programs must be General MIDI programs 0-127")
        if not self.drum_patterns or not set(self.drum_patterns) <= set(DRUM_PATTERNS):
            problems.append(f"demo.drum_patterns must be some of {', '.join(DRUM_PATTERNS)}")
        if set(self.mix_db) != set(MIX_PARTS) or not all(
                isinstance(v, (list, tuple)) and len(v) == 2 and v[0] <= v[1]
                for v in self.mix_db.values()):
            problems.append(f"demo.mix_db must give a [low, high] level for each of "
                            f"{', '.join(MIX_PARTS)}, got {self.mix_db}")
        splits = {*self.split_fractions, self.variants_split}
        if not isinstance(self.p_band_splits, Mapping) or not set(self.p_band_splits) <= splits \
                or not all(0.0 <= q <= 1.0 for q in self.p_band_splits.values()):
            problems.append(f"demo.p_band_splits must map some of {', '.join(sorted(splits))} to "
                            f"probabilities, got {self.p_band_splits}")
        if self.comp_ratio[0] < 1.0:
            problems.append("demo.comp_ratio must be >= 1")
        if not isinstance(self.exclude_splits, (list, tuple)):
            problems.append("demo.exclude_splits must be a list of split names")
        return problems


def demo_params(raw: Mapping[str, Any], size: str | None = None) -> DemoParams:
    """:class:`DemoParams` from the whole ``params.yaml`` tree (``raw["demo"]``).

    ``demo.size`` (``full`` or a preset of :data:`PRESETS`) picks the variant; ``size`` overrides
    it. A preset applies the keys of ``demo.<preset>`` over the full set. Unknown or
    missing keys are errors naming ``demo.key`` (as for every section).
    """
    if "demo" not in raw:
        raise ValueError("params: missing section demo")
    demo = dict(raw["demo"])
    if size is None and "size" not in demo:
        raise ValueError("params: missing key demo.size")
    chosen = size if size is not None else demo["size"]
    presets = {name: demo.pop(name, None) or {} for name in PRESETS}
    demo.pop("size", None)
    if chosen not in ("full", *PRESETS):
        raise ValueError(f"params: demo.size must be one of full, {', '.join(PRESETS)}; "
                         f"got {chosen!r}")
    names = {f.name for f in dataclasses.fields(DemoParams)}
    unknown = [f"unknown key demo.{name}.{k}" for name, over in presets.items()
               for k in sorted(set(over) - names)]
    if unknown:
        raise ValueError("params: " + "; ".join(unknown))
    if chosen != "full":
        demo.update(presets[chosen])
    return section(DemoParams, demo, "demo")


def reference_params(raw: Mapping[str, Any]) -> DemoParams:
    """The ``full`` demo's parameters: the catalogue whose ``exclude_splits`` tunes a
    preset such as ``large`` must never contain."""
    return demo_params(raw, "full")
