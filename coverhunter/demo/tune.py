"""A tune: one pass of a corpus tune as an array of notes (onset, duration, pitch, velocity)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Tune"]


@dataclass(frozen=True)
class Tune:
    """One pass of a corpus tune, repeats expanded, at the score's own tempo.

    ``notes`` has shape ``(n, 4)``: onset (s), duration (s), MIDI pitch, velocity, sorted
    by onset. ``length_s`` is the length of one pass (last bar included).
    """
    ref: str
    title: str
    notes: np.ndarray
    length_s: float

    @property
    def melody(self) -> np.ndarray:
        """The highest pitch at each onset, repeated pitches merged: shape ``(m,)``."""
        onsets, first = np.unique(self.notes[:, 0], return_index=True)
        top = np.maximum.reduceat(self.notes[:, 2], first) if onsets.size else np.zeros(0)
        keep = np.ones(top.size, bool)
        keep[1:] = top[1:] != top[:-1]
        return top[keep]

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "length_s": self.length_s, "notes": self.notes.tolist()}

    @classmethod
    def from_json(cls, ref: str, data: Mapping[str, Any]) -> Tune:
        notes = np.asarray(data["notes"], dtype=np.float64).reshape(-1, 4)
        return cls(ref, data["title"], notes, float(data["length_s"]))
