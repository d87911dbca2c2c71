"""Test signals with known content: sine tones and additive-synthesis melodies."""
from __future__ import annotations

import numpy as np


def tone(freq: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def melody(pitches: np.ndarray, note_s: float, sample_rate: int, harmonics: np.ndarray,
           rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    """A melody of MIDI ``pitches``, each ``note_s`` long, with the given harmonic weights
    and a short attack/decay envelope; white noise of std ``noise`` is added."""
    n = int(note_s * sample_rate)
    t = np.arange(n) / sample_rate
    env = np.minimum(1.0, t / 0.02) * np.exp(-2.0 * t)
    notes = []
    for pitch in pitches:
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        wave = sum(w * np.sin(2 * np.pi * f0 * (h + 1) * t) for h, w in enumerate(harmonics))
        notes.append(env * wave)
    audio = np.concatenate(notes)
    audio = 0.3 * audio / np.abs(audio).max()
    return (audio + noise * rng.standard_normal(len(audio))).astype(np.float32)
