"""A note array as Standard MIDI File bytes, for :func:`coverhunter.demo.render.render_score`."""
from __future__ import annotations

import io

import mido
import numpy as np

__all__ = ["notes_to_midi"]

_TICKS_PER_BEAT = 480
_US_PER_BEAT = 500_000  # 120 qpm, so a beat is half a second
_TICKS_PER_S = _TICKS_PER_BEAT * 1_000_000 // _US_PER_BEAT


def notes_to_midi(notes: np.ndarray) -> bytes:
    """Standard MIDI File bytes (one track, channel 0, 120 qpm) of a ``(n, 4)`` note array
    (onset s, duration s, pitch, velocity), for :func:`coverhunter.demo.render.render_score`."""
    events = []
    for onset, dur, pitch, vel in notes:
        on, off = round(onset * _TICKS_PER_S), round((onset + dur) * _TICKS_PER_S)
        if off > on:
            events.append((on, 1, int(pitch), int(np.clip(vel, 1, 127))))
            events.append((off, 0, int(pitch), 0))
    events.sort()  # at one tick, note-offs (0) before note-ons (1)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=_US_PER_BEAT, time=0)])
    now = 0
    for tick, kind, pitch, vel in events:
        msg = "note_on" if kind else "note_off"
        track.append(mido.Message(msg, note=pitch, velocity=vel, time=tick - now))
        now = tick
    midi = mido.MidiFile(ticks_per_beat=_TICKS_PER_BEAT)
    midi.tracks.append(track)
    buf = io.BytesIO()
    midi.save(file=buf)
    return buf.getvalue()
