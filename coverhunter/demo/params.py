"""The demo's parameters: :class:`DemoParams`, the ``demo:`` section of ``params.yaml``.

:func:`demo_params` reads it (``full`` or ``tiny``) and checks every value.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coverhunter.demo.corpus import RESERVED_COLLECTION
from coverhunter.params import section

__all__ = ["DemoParams", "demo_params"]

_RANGES = ("versions", "pass_s", "duration_s", "transpose", "tempo", "intro_s", "outro_s",
           "rt60_s", "reverb_wet", "snr_db", "noise_exponent", "peak_db")
_PROBABILITIES = ("p_cut", "p_repeat", "p_intro", "p_outro", "p_reverb", "p_noise")


@dataclass(frozen=True)
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
        if problems:
            raise ValueError("params: " + "; ".join(problems))
        object.__setattr__(self, "collections", list(self.collections))
        object.__setattr__(self, "programs", list(self.programs))
        object.__setattr__(self, "split_fractions", dict(self.split_fractions))


def demo_params(raw: Mapping[str, Any], size: str | None = None) -> DemoParams:
    """:class:`DemoParams` from the whole ``params.yaml`` tree (``raw["demo"]``).

    ``demo.size`` (``full`` or ``tiny``) picks the variant; ``size`` overrides it. ``tiny``
    applies the keys of ``demo.tiny`` over the full set. Unknown or missing keys are
    errors naming ``demo.key`` (as for every section).
    """
    if "demo" not in raw:
        raise ValueError("params: missing section demo")
    demo = dict(raw["demo"])
    if size is None and "size" not in demo:
        raise ValueError("params: missing key demo.size")
    chosen = size if size is not None else demo["size"]
    tiny = demo.pop("tiny", None) or {}
    demo.pop("size", None)
    if chosen not in ("full", "tiny"):
        raise ValueError(f"params: demo.size must be 'full' or 'tiny', got {chosen!r}")
    unknown = sorted(set(tiny) - {f.name for f in dataclasses.fields(DemoParams)})
    if unknown:
        raise ValueError("params: " + "; ".join(f"unknown key demo.tiny.{k}" for k in unknown))
    if chosen == "tiny":
        demo.update(tiny)
    return section(DemoParams, demo, "demo")
