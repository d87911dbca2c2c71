"""Offline audio for the demo catalogue: render music21 scores to mono waveforms.

A score goes through music21's own MIDI translation and is synthesised by TinySoundFont
(the ``tinysoundfont`` bindings; only their offline ``Synth.generate_simple`` path, so the
``pyaudio`` playback extra is never imported) with the General MIDI soundfont that ships
inside the ``pretty_midi`` wheel. The keyword knobs (instrument, transposition, tempo,
gain) turn one score into several "performances" of it, i.e. offline stand-ins for covers.
The Bach chorales are kept for an independent evaluation, so the corpus loader refuses them.

:func:`render_tracks` plays several note arrays at once, each on its own MIDI channel and
General MIDI program (drums on the percussion channel, 10), with any soundfont of
:data:`SOUNDFONTS` (:func:`soundfont_path`): the demo's band arrangements.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tinysoundfont
from music21 import corpus, stream
from music21.midi import translate
from tinysoundfont import _tinysoundfont
from tinysoundfont.midi import ControlChange, NoteOff, NoteOn, PitchBend, load_memory

from coverhunter.demo.names import RESERVED_COLLECTION, SOUNDFONT_NAMES

__all__ = ["DEFAULT_SOUNDFONT", "DRUM_CHANNEL", "SOUNDFONTS", "Track", "load_corpus_score",
           "render_score", "render_tracks", "score_to_midi", "soundfont_path", "track_channels"]

DEFAULT_SOUNDFONT = Path(importlib.util.find_spec("pretty_midi").origin).with_name("TimGM6mb.sf2")
# General MIDI banks by name: where each one is looked for (first hit wins), after the
# folder named by $COVERHUNTER_SOUNDFONT_DIR. timgm6mb ships inside the pretty_midi wheel;
# fluidr3mono (Fluid R3 Mono GM, MIT licence) is Debian's fluidr3mono-gm-soundfont package.
SOUNDFONTS: dict[str, tuple[Path, ...]] = {
    "timgm6mb": (DEFAULT_SOUNDFONT,),
    "fluidr3mono": (Path("/usr/share/sounds/sf3/FluidR3Mono_GM.sf3"),
                    Path("/usr/share/fluidr3mono-gm-soundfont/FluidR3Mono_GM.sf3")),
}
assert tuple(SOUNDFONTS) == SOUNDFONT_NAMES
_SOUNDFONT_HINTS = {"fluidr3mono": "apt-get install fluidr3mono-gm-soundfont"}
DRUM_CHANNEL = 9  # General MIDI channel 10, counted from 0
_MIDI_CHANNELS = 16


# long on purpose: one MIDI event loop
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


def soundfont_path(name: str) -> Path:
    """The file of the soundfont called ``name`` (a key of :data:`SOUNDFONTS`).

    ``$COVERHUNTER_SOUNDFONT_DIR/<file name>`` is tried first, then the known places.
    """
    if name not in SOUNDFONTS:
        raise ValueError(f"unknown soundfont {name!r}; known: {', '.join(SOUNDFONTS)}")
    places = SOUNDFONTS[name]
    folder = os.environ.get("COVERHUNTER_SOUNDFONT_DIR")
    if folder:
        places = (*(Path(folder) / p.name for p in places), *places)
    for path in places:
        if path.is_file():
            return path
    hint = _SOUNDFONT_HINTS.get(name)
    raise FileNotFoundError(
        f"soundfont {name!r} not found (looked for {', '.join(map(str, places))})"
        + (f"; install it with `{hint}`" if hint else ""))


@dataclass(frozen=True)
class Track:
    """One part for :func:`render_tracks`: ``notes`` ``(n, 4)`` (onset s, duration s, MIDI
    pitch or drum key, velocity 1-127) on General MIDI ``program``, ``gain_db`` louder or
    softer (channel volume); ``drums``: on the percussion channel (the standard kit;
    ``program`` is ignored and the notes are never transposed)."""
    notes: np.ndarray
    program: int = 0
    gain_db: float = 0.0
    drums: bool = False


def track_channels(tracks: Sequence[Track]) -> list[int]:
    """The MIDI channel (0-15) of each track: drums on :data:`DRUM_CHANNEL` (General MIDI
    channel 10), pitched tracks on the others in order. At most 15 pitched tracks and
    one drum track."""
    if sum(not t.drums for t in tracks) > _MIDI_CHANNELS - 1 or sum(t.drums for t in tracks) > 1:
        raise ValueError("render_tracks: at most 15 pitched tracks and one drum track")
    free = iter(c for c in range(_MIDI_CHANNELS) if c != DRUM_CHANNEL)
    return [DRUM_CHANNEL if t.drums else next(free) for t in tracks]


@functools.lru_cache(maxsize=4)
def _loaded_soundfont(path: str) -> _tinysoundfont.SoundFont:
    """A soundfont parsed once per process (an .sf3 decodes its samples for seconds);
    never played itself: :func:`render_tracks` plays independent copies of it."""
    return _tinysoundfont.SoundFont(path)


# long on purpose: one MIDI event loop over all parts
def render_tracks(
    tracks: Sequence[Track],
    sample_rate: int,
    soundfont: str | Path | None = None,
    transpose: int = 0,
    tempo_scale: float = 1.0,
    *,
    n_samples: int | None = None,
    tail_s: float = 1.0,
) -> np.ndarray:
    """Render several parts together to mono float32 audio at ``sample_rate`` Hz.

    Each :class:`Track` gets its own MIDI channel (drums: channel 10, :data:`DRUM_CHANNEL`)
    and program; ``soundfont`` is a file (default :data:`DEFAULT_SOUNDFONT`).
    ``transpose`` shifts every pitched note (notes pushed outside 0-127 are dropped);
    ``tempo_scale`` > 1 plays faster. The result has ``n_samples`` samples when given,
    otherwise it ends ``tail_s`` after the last note-off. A mix that would clip is scaled
    down to a peak of 1.0. At most 15 pitched tracks and one drum track.
    """
    if sample_rate <= 0 or tempo_scale <= 0 or tail_s < 0:
        raise ValueError(f"need sample_rate > 0, tempo_scale > 0 and tail_s >= 0; "
                         f"got {sample_rate}, {tempo_scale}, {tail_s}")
    channels = list(zip(track_channels(tracks), tracks))
    sf = _tinysoundfont.SoundFont(_loaded_soundfont(str(soundfont or DEFAULT_SOUNDFONT)))
    sf.set_output(_tinysoundfont.OutputMode.StereoInterleaved, sample_rate, 0.0)
    sf.set_max_voices(256)
    events: list[tuple[int, int, int, int, float]] = []  # frame, on?, channel, key, velocity
    for chan, t in channels:
        if not 0 <= t.program <= 127:
            raise ValueError(f"program must be a General MIDI program 0-127, got {t.program}")
        if t.drums:
            sf.channel_set_bank(chan, 128)
            sf.channel_set_preset_number(chan, 0, True)
        else:
            sf.channel_set_bank(chan, 0)
            sf.channel_set_preset_number(chan, t.program, False)
        sf.channel_set_volume(chan, float(10.0 ** (t.gain_db / 20.0)))
        notes = np.asarray(t.notes, dtype=np.float64).reshape(-1, 4)
        keys = notes[:, 2].round().astype(int) + (0 if t.drums else transpose)
        on = np.round(notes[:, 0] / tempo_scale * sample_rate).astype(np.int64)
        off = np.round((notes[:, 0] + notes[:, 1]) / tempo_scale * sample_rate).astype(np.int64)
        vel = np.clip(notes[:, 3], 1, 127) / 127.0
        for k, a, b, v in zip(keys.tolist(), on.tolist(), off.tolist(), vel.tolist()):
            if 0 <= k <= 127 and b > a:
                events.append((a, 1, chan, k, v))
                events.append((b, 0, chan, k, 0.0))
    events.sort()  # at one frame, note-offs (0) before note-ons (1)
    last = max((e[0] for e in events), default=0)
    n_frames = n_samples if n_samples is not None else last + round(tail_s * sample_rate)
    stereo = np.zeros((n_frames, 2), dtype=np.float32)
    done = 0
    for frame, is_on, chan, key, vel in events:
        frame = min(frame, n_frames)
        if frame > done:
            sf.render(memoryview(stereo[done:frame]).cast("B"), False)
            done = frame
        if is_on:
            sf.channel_note_on(chan, key, vel)
        else:
            sf.channel_note_off(chan, key)
    if n_frames > done:
        sf.render(memoryview(stereo[done:]).cast("B"), False)
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
    if top == RESERVED_COLLECTION:
        raise ValueError(
            f"{name!r} resolves to {path}: the Bach chorales (corpus 'bach/') are reserved "
            "for independent evaluation and may not be used for demo or training data"
        )
    return corpus.parse(name, number=number)
