"""Offline audio for the demo catalogue: render music21 scores to mono waveforms.

A score goes through music21's own MIDI translation and is synthesised by TinySoundFont
(the ``tinysoundfont`` bindings; only their offline ``Synth.generate_simple`` path, so the
``pyaudio`` playback extra is never imported) with the General MIDI soundfont that ships
inside the ``pretty_midi`` wheel. The keyword knobs (instrument, transposition, tempo,
gain) turn one score into several "performances" of it, i.e. offline stand-ins for covers.
The Bach chorales are kept for an independent evaluation, so the corpus loader refuses them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import tinysoundfont
from music21 import corpus, stream
from music21.midi import translate
from tinysoundfont.midi import ControlChange, NoteOff, NoteOn, PitchBend, load_memory

__all__ = ["DEFAULT_SOUNDFONT", "load_corpus_score", "render_score", "score_to_midi"]

DEFAULT_SOUNDFONT = Path(importlib.util.find_spec("pretty_midi").origin).with_name("TimGM6mb.sf2")
_RESERVED_CORPUS_DIR = "bach"  # independent evaluation only (shared/STACK.md)
_MIDI_CHANNELS = 16


def render_score(
    score: stream.Stream | bytes,
    sample_rate: int,
    program: int = 0,
    soundfont: str | Path | None = None,
    transpose: int = 0,
    tempo_scale: float = 1.0,
    gain_db: float = 0.0,
    *,
    tail_s: float = 1.0,
) -> np.ndarray:
    """Render ``score`` to mono float32 audio at ``sample_rate`` Hz.

    ``score`` is a music21 stream or the Standard MIDI File bytes that
    :func:`score_to_midi` made of one: pass the bytes to render several variants of a
    score without repeating music21's MIDI translation (most of the cost of a render).
    ``program`` is the General MIDI program (0-127) forced on every part and channel
    (drum channel included); ``transpose`` shifts every note by that many semitones
    (notes pushed outside MIDI 0-127 are dropped); ``tempo_scale`` > 1 plays faster.
    The audio ends ``tail_s`` seconds after the last note-off (release tail). If the
    mix would clip it is scaled down to a peak of 1.0.
    """
    if sample_rate <= 0 or tempo_scale <= 0 or tail_s < 0:
        raise ValueError(
            f"need sample_rate > 0, tempo_scale > 0 and tail_s >= 0; "
            f"got {sample_rate}, {tempo_scale}, {tail_s}"
        )
    if not 0 <= program <= 127:
        raise ValueError(f"program must be a General MIDI program 0-127, got {program}")
    midi = score if isinstance(score, bytes) else score_to_midi(score)
    # ProgramChange events are dropped: the forced program is set on every channel below.
    events = [
        e
        for e in load_memory(midi, persistent=False)
        if isinstance(e.action, (NoteOn, NoteOff, ControlChange, PitchBend))
    ]
    note_times = [e.t for e in events if isinstance(e.action, (NoteOn, NoteOff))]
    if not note_times:
        raise ValueError("cannot render an empty score: its MIDI has no note events")
    n_frames = round((max(note_times) / tempo_scale + tail_s) * sample_rate)

    synth = tinysoundfont.Synth(gain=gain_db, samplerate=sample_rate)  # gain applies at sfload
    sfid = synth.sfload(str(soundfont or DEFAULT_SOUNDFONT))
    for channel in range(_MIDI_CHANNELS):
        synth.program_select(channel, sfid, 0, program)

    stereo = np.zeros((n_frames, 2), dtype=np.float32)  # interleaved L/R, written in place
    done = 0
    for event in events:
        frame = min(round(event.t / tempo_scale * sample_rate), n_frames)
        if frame > done:
            synth.generate_simple(frame - done, buffer=memoryview(stereo[done:frame]).cast("B"))
            done = frame
        _send(synth, event, transpose)
    if n_frames > done:
        synth.generate_simple(n_frames - done, buffer=memoryview(stereo[done:]).cast("B"))

    mono = stereo.mean(axis=1)
    peak = float(np.abs(mono).max(initial=0.0))
    if peak > 1.0:
        mono /= peak
    return mono


def score_to_midi(score: stream.Stream) -> bytes:
    """Standard MIDI File bytes of ``score`` via music21 (repeats expanded, default 120 qpm)."""
    if not score.recurse().notes:
        raise ValueError(f"cannot render an empty score (no notes or chords): {score!r}")
    return translate.streamToMidiFile(score).writestr()


def _send(synth: tinysoundfont.Synth, event: tinysoundfont.midi.Event, transpose: int) -> None:
    """Apply one MIDI event to ``synth`` now (out-of-range keys are ignored by the synth)."""
    action, channel = event.action, event.channel
    if isinstance(action, NoteOn):
        synth.noteon(channel, action.key + transpose, action.velocity)
    elif isinstance(action, NoteOff):
        synth.noteoff(channel, action.key + transpose)
    elif isinstance(action, ControlChange):
        synth.control_change(channel, action.control, action.control_value)
    else:
        synth.pitchbend(channel, action.pitch_bend)


def load_corpus_score(name: str, *, number: int | None = None) -> stream.Stream:
    """``music21.corpus.parse(name, number=number)``, refusing the Bach chorales.

    ``number`` picks one tune out of a multi-tune ABC collection (e.g. the Essen ballads).
    """
    found = corpus.getWork(name)
    path = Path(found[0] if isinstance(found, list) else found)  # the file corpus.parse uses
    try:
        top = path.resolve().relative_to(Path(corpus.__file__).resolve().parent).parts[0]
    except ValueError:  # a local corpus outside music21's own
        top = None
    if top == _RESERVED_CORPUS_DIR:
        raise ValueError(
            f"{name!r} resolves to {path}: the Bach chorales (corpus 'bach/') are reserved "
            "for independent evaluation and may not be used for demo or training data"
        )
    return corpus.parse(name, number=number)
