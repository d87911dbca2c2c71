"""Band arrangements: chords, a bass line and drums made to fit a tune.

Everything here works on one pass of a tune, in the tune's own time (seconds at the
score's tempo, before the version's key and tempo change), and is deterministic: the
random choices (style, programs, patterns) are drawn by :mod:`~coverhunter.demo.plan`
and recorded in the recipe; :func:`accompany` turns them into notes.

- the harmony: :mod:`~coverhunter.demo.harmony` (key and one chord per bar);
- chord parts in one of :data:`CHORD_STYLES` (strummed, arpeggiated, sustained pad,
  rhythmic comping, or hymn: the tune harmonised in four parts), a bass line in one of
  :data:`BASS_STYLES` (held roots, roots and fifths, walking) and drums in one of
  :data:`DRUM_PATTERNS` on the General MIDI percussion keys, following the tune's beats
  (simple or compound metre).
"""
from __future__ import annotations

import numpy as np

from coverhunter.demo.harmony import _EPS, Chord, Key, Segment, diatonic_chords, estimate_key, harmonise
from coverhunter.demo.tune import Tune

__all__ = ["BASS_STYLES", "CHORD_STYLES", "DRUM_PATTERNS", "Chord", "Key", "Segment",
           "accompany", "bass_line", "chord_part", "diatonic_chords", "drum_part",
           "estimate_key", "harmonise"]

CHORD_STYLES = ("strum", "arpeggio", "pad", "comp", "hymn")
BASS_STYLES = ("held", "root5", "walking")
DRUM_PATTERNS = ("rock", "folk", "brush", "march")

# General MIDI percussion keys (channel 10)
KICK, STICK, SNARE, CLOSED_HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE, TAMBOURINE = (
    36, 37, 38, 42, 44, 46, 49, 51, 54)

# ------------------------------------------------------------------------------ voicing


def _pitch(pc: int, low: int) -> int:
    """The lowest pitch of pitch class ``pc`` at or above ``low``."""
    return low + (pc - low) % 12


def _close_voicing(chord: Chord, low: int, prev: list[int] | None) -> list[int]:
    """The inversion of ``chord`` (lowest note in ``[low, low + 11]``) nearest ``prev``."""
    options = []
    for i in range(3):
        order = chord.pcs[i:] + chord.pcs[:i]
        v = [_pitch(order[0], low)]
        for pc in order[1:]:
            v.append(_pitch(pc, v[-1] + 1))
        options.append(v)
    if prev is None:
        return options[0]
    return min(options, key=lambda v: sum(abs(a - b) for a, b in zip(v, prev)))


def _guitar_voicing(chord: Chord) -> list[int]:
    """Root in E2-D#3, then the chord tones above it up to an octave and a half."""
    root = _pitch(chord.root, 40)
    return [p for p in range(root, root + 20) if p % 12 in chord.pcs]


def _top_pitch(notes: np.ndarray, t: float) -> int | None:
    """The highest pitch of ``notes`` ``(n, 4)`` sounding at time ``t`` (None in a rest)."""
    on = (notes[:, 0] <= t + _EPS) & (notes[:, 0] + notes[:, 1] > t + _EPS)
    return int(notes[on, 2].max()) if on.any() else None


def _under(chord: Chord, top: int, voices: int) -> list[int]:
    """``voices`` chord tones stacked down from just under ``top``, each the nearest
    chord tone at least a minor third below the one above it (alto, tenor)."""
    out, above = [], top
    for _ in range(voices):
        p = above - 3
        while p % 12 not in chord.pcs:
            p -= 1
        out.append(p)
        above = p
    return out


def _beats_in(beats: np.ndarray, a: float, b: float) -> np.ndarray:
    return beats[(beats >= a - _EPS) & (beats < b - _EPS)]


def _beat_length(beats: np.ndarray, i: int, fallback: float) -> float:
    return float(beats[i + 1] - beats[i]) if i + 1 < beats.size else fallback


def _subdivisions(seg: Segment, beats: np.ndarray, division: int,
                  beat_s: float) -> list[tuple[float, int, int]]:
    """``(onset, beat index in the segment, subdivision index)`` of every subdivision of
    every beat inside the segment."""
    inside = np.flatnonzero((beats >= seg.start - _EPS) & (beats < seg.end - _EPS))
    out = []
    for k, i in enumerate(inside):
        length = _beat_length(beats, int(i), beat_s)
        for j in range(division):
            t = float(beats[i]) + j * length / division
            if t < seg.end - _EPS:
                out.append((t, k, j))
    return out


def _notes(rows: list[tuple[float, float, int, float]]) -> np.ndarray:
    arr = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return arr[np.lexsort((arr[:, 2], arr[:, 0]))] if arr.size else arr


# ------------------------------------------------------------------------------- parts


def chord_part(segments: list[Segment], tune: Tune, style: str) -> np.ndarray:
    """The chords of ``segments`` played in ``style`` (one of :data:`CHORD_STYLES`):
    ``(n, 4)`` notes of one pass.

    - ``strum``: a guitar voicing (root in the bass) strummed down on every beat, strings
      12 ms apart, and up (top three strings, softer) on the last subdivision of a beat;
    - ``arpeggio``: the chord's notes one per subdivision, up and down, each ringing for
      two subdivisions;
    - ``pad``: a close voicing (around middle C, nearest the previous chord) held for the
      chord's whole length;
    - ``comp``: short close-voiced stabs off the beat: on every subdivision but the first
      of a beat, in triple time on beats 2 and 3 instead;
    - ``hymn``: the homophony of a hymn or chorale: on every beat two inner voices under
      the tune's sounding note (chord tones a third or more apart) and the chord's root
      in the bass (E2-D#3), held for the beat; in the tune's rests, under its last note.
    """
    beats, _, division = tune.grid()
    beat_s = float(np.median(np.diff(beats))) if beats.size > 1 else 0.5
    rows: list[tuple[float, float, int, float]] = []
    prev: list[int] | None = None
    top = 72                                  # hymn: the tune's note sounding now (C5 before it starts)
    for n, seg in enumerate(segments):
        if style == "pad":
            if n and segments[n - 1].chord == seg.chord and rows:
                continue  # already held from the previous segment
            end = seg.end
            for later in segments[n + 1:]:
                if later.chord != seg.chord:
                    break
                end = later.end
            prev = _close_voicing(seg.chord, 53, prev)
            rows += [(seg.start, end - seg.start, p, 64.0) for p in prev]
            continue
        subs = _subdivisions(seg, beats, division, beat_s)
        if not subs:
            continue
        sub_s = beat_s / division
        if style == "hymn":
            for t, _, j in subs:
                if j:
                    continue                  # a voicing per beat
                top = _top_pitch(tune.notes, t) or top     # in a rest, under the last note
                beat_end = min(t + beat_s, seg.end)
                voices = [*_under(seg.chord, top, 2), _bass_pitch(seg.chord.root)]
                rows += [(t, beat_end - t - 0.01, p, 70.0) for p in voices]
        elif style == "strum":
            strings = _guitar_voicing(seg.chord)
            strokes = [(t, j == 0) for t, _, j in subs if j in (0, division - 1)]
            for s, (t, down) in enumerate(strokes):
                nxt = strokes[s + 1][0] if s + 1 < len(strokes) else seg.end
                play = strings if down else strings[::-1][:3]
                for k, p in enumerate(play):
                    on = t + 0.012 * k
                    if on < nxt - 0.02:
                        rows.append((on, nxt - on - 0.01, p, 84.0 if down else 62.0))
        elif style == "arpeggio":
            root = _pitch(seg.chord.root, 48)
            tones = [p for p in range(root, root + 17) if p % 12 in seg.chord.pcs]
            cycle = tones + tones[-2:0:-1]
            for k, (t, _, _) in enumerate(subs):
                dur = min(2 * sub_s, seg.end - t)
                rows.append((t, dur, cycle[k % len(cycle)], 70.0 if k % division else 80.0))
        elif style == "comp":
            prev = _close_voicing(seg.chord, 55, prev)
            n_beats = len({k for _, k, _ in subs})
            for t, k, j in subs:
                triple = n_beats == 3 and division == 2
                if (triple and k > 0 and j == 0) or (not triple and j > 0):
                    rows += [(t, 0.6 * sub_s, p, 76.0) for p in prev]
        else:
            raise ValueError(f"unknown chord style {style!r}; known: {', '.join(CHORD_STYLES)}")
    return _notes(rows)


def _bass_pitch(pc: int) -> int:
    return _pitch(pc, 40)  # E2-D#3


def bass_line(segments: list[Segment], tune: Tune, style: str) -> np.ndarray:
    """A bass line under ``segments`` in ``style`` (one of :data:`BASS_STYLES`): ``(n, 4)``
    notes of one pass, between E2 and D#3 (MIDI 40-51) except walking passing notes.

    - ``held``: the root, held while the chord lasts;
    - ``root5``: root, fifth, root, ... on the strong beats (every beat of a two-beat
      bar, beats 1 and 3 of four, beat 1 of three), each held to the next;
    - ``walking``: a note every beat: the root on the chord's first beat, then the third
      and the fifth, and a semitone below or above the next root on the chord's last beat
      (when the chord has three beats or more).
    """
    beats, bars, _ = tune.grid()
    beat_s = float(np.median(np.diff(beats))) if beats.size > 1 else 0.5
    rows: list[tuple[float, float, int, float]] = []
    held_until = -1.0
    nominal = _nominal_beats(beats, bars, tune.length_s)
    for n, seg in enumerate(segments):
        root, fifth = _bass_pitch(seg.chord.root), _bass_pitch(seg.chord.fifth)
        inside = _beats_in(beats, seg.start, seg.end)
        if style == "held":
            if held_until == seg.start and rows and rows[-1][2] == root:
                last = rows[-1]  # the same root goes on: hold it longer
                rows[-1] = (last[0], seg.end - last[0] - 0.02, last[2], last[3])
                held_until = seg.end
            elif inside.size:
                rows.append((float(inside[0]), seg.end - float(inside[0]) - 0.02, root, 90.0))
                held_until = seg.end
            continue
        if not inside.size:
            continue
        if style == "root5":
            strong = [t for t in inside
                      if _is_strong(*_position(float(t), beats, bars, tune.length_s, nominal))]
            for k, t in enumerate(strong):
                nxt = strong[k + 1] if k + 1 < len(strong) else seg.end
                rows.append((float(t), nxt - t - 0.02, root if k % 2 == 0 else fifth, 90.0))
        elif style == "walking":
            third = _bass_pitch(seg.chord.pcs[1])
            nxt_root = _bass_pitch(segments[(n + 1) % len(segments)].chord.root)
            approach = nxt_root - 1 if nxt_root > root else nxt_root + 1
            line = [root, third, fifth, third, fifth]
            for k, t in enumerate(inside):
                nxt = float(inside[k + 1]) if k + 1 < inside.size else seg.end
                if k == 0:
                    p = root
                elif k == inside.size - 1 and inside.size >= 3:
                    p = approach
                else:
                    p = line[k % len(line)]
                rows.append((float(t), min(nxt, float(t) + beat_s) - t - 0.02, p, 88.0))
        else:
            raise ValueError(f"unknown bass style {style!r}; known: {', '.join(BASS_STYLES)}")
    return _notes(rows)


def _bar_of(bars: np.ndarray, t: float, length_s: float) -> tuple[float, float]:
    """``(start, end)`` of the bar holding ``t``."""
    i = int(np.searchsorted(bars, t + _EPS, side="right")) - 1
    start = float(bars[i]) if i >= 0 else 0.0
    end = float(bars[i + 1]) if i + 1 < bars.size else length_s
    return start, end


def _nominal_beats(beats: np.ndarray, bars: np.ndarray, length_s: float) -> int:
    """The most common number of beats in a bar."""
    ends = [*bars[1:].tolist(), length_s]
    counts = [_beats_in(beats, a, b).size for a, b in zip(bars.tolist(), ends)]
    counts = [c for c in counts if c > 0]
    return int(np.bincount(counts).argmax()) if counts else 4


def _position(t: float, beats: np.ndarray, bars: np.ndarray, length_s: float,
              nominal: int) -> tuple[int, int]:
    """``(k, n)``: the beat at ``t`` is beat ``k`` (from 0) of a bar of ``n`` beats. A bar
    whose first beat comes after its bar line is a pickup: its beats are the last ones
    of a full bar."""
    a, b = _bar_of(bars, t, length_s)
    bar_beats = _beats_in(beats, a, b)
    k, n = int(np.abs(bar_beats - t).argmin()), bar_beats.size
    if bar_beats[0] - a > 1e-3 and n < nominal:
        k, n = k + nominal - n, nominal
    return k, n


def _is_strong(k: int, n: int) -> bool:
    """Beat 1 always; beats 1 and 3 of four (or more); every beat of two; beat 1 of three."""
    if n <= 2:
        return True
    if n == 3:
        return k == 0
    return k % 2 == 0


def drum_part(tune: Tune, pattern: str) -> np.ndarray:
    """One pass of drums in ``pattern`` (one of :data:`DRUM_PATTERNS`): ``(n, 4)`` notes
    whose pitches are General MIDI percussion keys (for channel 10).

    All patterns: a crash on the first full bar's downbeat, the bass drum on beat 1 (and
    3 of four), the backbeat (beats 2 and 4; the second beat of two; beats 2 and 3 of
    three) on the snare, side stick or tambourine:

    - ``rock``: closed hi-hat on every subdivision, snare backbeat;
    - ``folk``: bass drum on every beat, tambourine on the last subdivision of each beat;
    - ``brush``: ride on every beat and the last subdivision, pedal hi-hat and side stick on
      the backbeat, a soft bass drum on beat 1;
    - ``march``: snare on every subdivision, accented on the beats.
    """
    if pattern not in DRUM_PATTERNS:
        raise ValueError(f"unknown drum pattern {pattern!r}; known: {', '.join(DRUM_PATTERNS)}")
    beats, bars, division = tune.grid()
    beat_s = float(np.median(np.diff(beats))) if beats.size > 1 else 0.5
    rows: list[tuple[float, float, int, float]] = []
    crashed = False
    nominal = _nominal_beats(beats, bars, tune.length_s)
    for i, t in enumerate(beats.tolist()):
        k, n = _position(t, beats, bars, tune.length_s, nominal)
        if k == 0 and n >= 2 and not crashed:
            rows.append((t, 0.2, CRASH, 90.0))
            crashed = True
        backbeat = (k % 2 == 1) if n != 3 else k > 0
        length = _beat_length(beats, i, beat_s)
        subs = [t + j * length / division for j in range(division)]
        if pattern == "rock":
            rows += [(s, 0.1, CLOSED_HAT, 80.0 if j == 0 else 62.0) for j, s in enumerate(subs)]
            if k == 0 or (n >= 4 and k == 2):
                rows.append((t, 0.2, KICK, 100.0))
            if backbeat:
                rows.append((t, 0.2, SNARE, 96.0))
        elif pattern == "folk":
            rows.append((t, 0.2, KICK, 96.0 if k == 0 else 76.0))
            rows.append((subs[-1], 0.1, TAMBOURINE, 70.0))
            if backbeat:
                rows.append((t, 0.1, TAMBOURINE, 84.0))
        elif pattern == "brush":
            rows.append((t, 0.3, RIDE, 72.0))
            rows.append((subs[-1], 0.2, RIDE, 56.0))
            if k == 0:
                rows.append((t, 0.2, KICK, 70.0))
            if backbeat:
                rows += [(t, 0.1, PEDAL_HAT, 70.0), (t, 0.1, STICK, 78.0)]
        else:  # march
            rows += [(s, 0.1, SNARE, 96.0 if j == 0 else 66.0) for j, s in enumerate(subs)]
            if k == 0 or (n >= 4 and k == 2):
                rows.append((t, 0.2, KICK, 96.0))
    return _notes(rows)


def accompany(tune: Tune, styles: list[str], bass: str, drums: str,
              half_bars: bool = False) -> dict[str, np.ndarray]:
    """The accompaniment of one pass of ``tune``: ``{part: (n, 4) notes}`` with one chord
    part per style (keys ``chords0``, ``chords1``, ...), ``bass`` (unless ``bass`` is "")
    and ``drums`` (unless ``drums`` is "")."""
    segments = harmonise(tune, half_bars)
    parts = {f"chords{i}": chord_part(segments, tune, s) for i, s in enumerate(styles)}
    if bass:
        parts["bass"] = bass_line(segments, tune, bass)
    if drums:
        parts["drums"] = drum_part(tune, drums)
    return parts
