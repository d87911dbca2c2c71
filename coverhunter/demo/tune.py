"""A tune: one pass of a corpus tune as an array of notes (onset, duration, pitch, velocity),
with its metre (beat and bar onsets) for the accompaniment."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Tune"]

_FALLBACK_BEAT_S = 0.5   # a tune without a metre: a beat every half second (120 qpm) ...
_FALLBACK_BEATS_PER_BAR = 4  # ... four to a bar


def _empty() -> np.ndarray:
    return np.zeros(0)


@dataclass(frozen=True)
class Tune:
    """One pass of a corpus tune, repeats expanded, at the score's own tempo.

    ``notes`` has shape ``(n, 4)``: onset (s), duration (s), MIDI pitch, velocity, sorted
    by onset. ``length_s`` is the length of one pass (last bar included).
    ``beats`` and ``bars``: onsets (s) of the beats and of the bars of one pass, from the
    score's measures and time signatures (a pickup bar has no beat before its first full
    one); ``division``: subdivisions of a beat (2 in simple metres, 3 in compound ones
    such as 6/8). Empty for a tune made by hand: :meth:`grid` then assumes 4/4 at 120 qpm.
    """
    ref: str
    title: str
    notes: np.ndarray
    length_s: float
    beats: np.ndarray = field(default_factory=_empty)
    bars: np.ndarray = field(default_factory=_empty)
    division: int = 2

    @property
    def melody(self) -> np.ndarray:
        """The highest pitch at each onset, repeated pitches merged: shape ``(m,)``."""
        onsets, first = np.unique(self.notes[:, 0], return_index=True)
        top = np.maximum.reduceat(self.notes[:, 2], first) if onsets.size else np.zeros(0)
        keep = np.ones(top.size, bool)
        keep[1:] = top[1:] != top[:-1]
        return top[keep]

    def grid(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``(beats, bars, division)`` of one pass; a tune without a recorded metre gets a
        beat every 0.5 s and a bar every 4 beats."""
        if self.beats.size and self.bars.size:
            return self.beats, self.bars, self.division
        beats = np.arange(0.0, self.length_s, _FALLBACK_BEAT_S)
        return beats, beats[::_FALLBACK_BEATS_PER_BAR].copy(), 2

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "length_s": self.length_s, "notes": self.notes.tolist(),
                "beats": self.beats.tolist(), "bars": self.bars.tolist(),
                "division": self.division}

    @classmethod
    def from_json(cls, ref: str, data: Mapping[str, Any]) -> Tune:
        notes = np.asarray(data["notes"], dtype=np.float64).reshape(-1, 4)
        return cls(ref, data["title"], notes, float(data["length_s"]),
                   np.asarray(data.get("beats", []), dtype=np.float64),
                   np.asarray(data.get("bars", []), dtype=np.float64),
                   int(data.get("division", 2)))
