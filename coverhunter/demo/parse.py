"""Tune extraction: one corpus score parsed into a :class:`~coverhunter.demo.tune.Tune`.

Repeats are written out as ABC players read them, chord symbols and grace notes skipped,
ties merged, and quarter lengths turned into seconds through the score's tempo marks. The
beats and bars of the first part's measures are kept for the accompaniment.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from music21 import bar as m21_bar
from music21 import harmony as m21_harmony
from music21 import meter as m21_meter
from music21 import stream as m21_stream
from music21 import tempo as m21_tempo

from coverhunter.demo.corpus import clean_title
from coverhunter.demo.render import load_corpus_score
from coverhunter.demo.tune import Tune

__all__ = ["EXTRACT_VERSION", "load_tune"]

# Bump when a change to tune extraction (load_tune) changes the notes of a tune: the
# cache of parsed tunes is then rebuilt. (Rendered audio needs no such number: a recipe's
# hash covers the source of the modules that make the audio, see Recipe.digest.)
# 2: beats, bars and beat division recorded (the notes are unchanged).
EXTRACT_VERSION = 2

_DEFAULT_QPM = 120.0        # music21's MIDI translation uses 120 qpm when a score has no tempo
_QPM_LIMITS = (40.0, 240.0)  # a tempo mark outside this is a transcription slip; clamp it
_DEFAULT_VELOCITY = 90       # ABC tunes carry no dynamics; music21's MIDI default
_SECTION_BARS = frozenset({"double", "final", "light-light", "light-heavy", "heavy-light",
                           "heavy-heavy"})


def load_tune(ref: str, title: str = "", *, expand_repeats: bool = True) -> Tune:
    """Parse one corpus tune (``"collection/file#number"``) into a :class:`Tune`.

    Goes through :func:`coverhunter.demo.render.load_corpus_score` (which refuses the Bach
    chorales). Chord symbols and grace notes are skipped, tied notes merged, chords kept.
    With ``expand_repeats`` the repeats and endings are written out (one full pass);
    without it (fillers, where any few seconds of music will do) parsing is faster.
    """
    name, _, number = ref.partition("#")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = load_corpus_score(name, number=int(number) if number else None)
        if expand_repeats:
            try:
                score = _mark_repeat_starts(score).expandRepeats()
            except Exception:  # noqa: BLE001 - malformed repeat marks: play it as written
                pass
        flat = score.flatten()
        beats_ql, bars_ql, division = _metre(score)
    marks = sorted((float(m.offset), m.getQuarterBPM()) for m in
                   flat.getElementsByClass(m21_tempo.MetronomeMark))
    rows: list[list[float]] = []
    tied: dict[int, int] = {}  # MIDI pitch -> row of the note its tie continues
    for n in flat.notes:
        if isinstance(n, m21_harmony.Harmony):
            continue
        ql = float(n.duration.quarterLength)
        if ql <= 0:  # grace notes
            continue
        onset = float(n.offset)
        velocity = n.volume.velocity if n.volume.velocity is not None else _DEFAULT_VELOCITY
        tie = n.tie.type if n.tie is not None else None
        for p in n.pitches:
            if tie in ("continue", "stop") and p.midi in tied:
                row = rows[tied[p.midi]]
                row[1] = onset + ql - row[0]
                if tie == "stop":
                    del tied[p.midi]
                continue
            rows.append([onset, ql, float(p.midi), float(velocity)])
            if tie == "start":
                tied[p.midi] = len(rows) - 1
    if not rows:
        raise ValueError(f"{ref}: no notes")
    notes = np.asarray(sorted(rows), dtype=np.float64)
    end_ql = max(float(flat.highestTime), float((notes[:, 0] + notes[:, 1]).max()))
    to_s = _tempo_map(marks)
    onset_s = to_s(notes[:, 0])
    notes[:, 1] = to_s(notes[:, 0] + notes[:, 1]) - onset_s
    notes[:, 0] = onset_s
    if not title:
        title = clean_title(score.metadata.title if score.metadata and score.metadata.title
                            else name)
    if not bars_ql.size:  # no measures: 4/4, a beat a quarter
        beats_ql = np.arange(0.0, end_ql, 1.0)
        bars_ql = beats_ql[::4].copy()
    beats_ql, bars_ql = beats_ql[beats_ql < end_ql], bars_ql[bars_ql < end_ql]
    return Tune(ref, title, notes, float(to_s(np.array([end_ql]))[0]), to_s(beats_ql),
                to_s(bars_ql), division)


def _beat_shape(ts: m21_meter.TimeSignature | None) -> tuple[float, int]:
    """``(beat length in quarter lengths, beat division)`` of a time signature: a quarter
    and 2 without one; 3/8 and the like count their eighths as beats."""
    if ts is None:
        return 1.0, 2
    try:
        beat_ql, count, division = (float(ts.beatDuration.quarterLength), ts.beatCount,
                                    ts.beatDivisionCount)
    except Exception:  # noqa: BLE001 - an additive or malformed signature
        return 4.0 / ts.denominator if ts.denominator else 1.0, 2
    if count == 1 or division not in (2, 3) or beat_ql <= 0:
        return 4.0 / ts.denominator, 2
    return beat_ql, division


def _metre(score: m21_stream.Stream) -> tuple[np.ndarray, np.ndarray, int]:
    """Beat and bar onsets (quarter lengths) of the first part's measures, and the beat
    division of the first time signature. A pickup bar (``paddingLeft``) has beats only
    where the full bar would have them."""
    part = (list(score.parts) or [score])[0]
    beats: list[float] = []
    bars: list[float] = []
    ts, division = None, None
    for m in part.getElementsByClass(m21_stream.Measure):
        if m.timeSignature is not None:
            ts = m.timeSignature
        start, dur = float(part.offset) + float(m.offset), float(m.duration.quarterLength)
        if dur <= 0:
            continue
        beat_ql, div = _beat_shape(ts)
        division = division or div
        bars.append(start)
        b = start - float(m.paddingLeft or 0.0)
        while b < start + dur - 1e-9:
            if b >= start - 1e-9:
                beats.append(b)
            b += beat_ql
    return np.asarray(beats), np.asarray(bars), division or 2


def _mark_repeat_starts(score: m21_stream.Stream) -> m21_stream.Stream:
    """Give every end repeat its start, as ABC players read it (in place; returns ``score``).

    Fiddle-tune books write ``A :| B :| C :|`` with no ``|:``: each strain repeats from
    the previous end repeat or double bar. music21 sends every such repeat back to the
    start of the tune (AABAABC...), so a hornpipe came out 2-3 times too long.
    """
    for part in score.parts or [score]:
        measures = list(part.getElementsByClass(m21_stream.Measure))
        start, has_start = 0, False
        for i, m in enumerate(measures):
            left, right = m.leftBarline, m.rightBarline
            if isinstance(left, m21_bar.Repeat) and left.direction == "start":
                has_start = True
            elif left is not None and left.type in _SECTION_BARS and not has_start:
                start = i
            if isinstance(right, m21_bar.Repeat) and right.direction == "end":
                if not has_start and start > 0:
                    measures[start].leftBarline = m21_bar.Repeat(direction="start")
                start, has_start = i + 1, False
            elif right is not None and right.type in _SECTION_BARS and not has_start:
                start = i + 1
    return score


def _tempo_map(marks: list[tuple[float, float | None]]) -> Callable[[np.ndarray], np.ndarray]:
    """Quarter-length offsets -> seconds, piecewise linear between metronome marks."""
    starts, qpms = [0.0], [_DEFAULT_QPM]
    for offset, qpm in marks:
        qpm = float(np.clip(qpm or _DEFAULT_QPM, *_QPM_LIMITS))
        if offset <= starts[-1]:
            qpms[-1] = qpm
        else:
            starts.append(offset)
            qpms.append(qpm)
    starts_a = np.asarray(starts)
    spq = 60.0 / np.asarray(qpms)  # seconds per quarter in each segment
    base = np.concatenate([[0.0], np.cumsum(np.diff(starts_a) * spq[:-1])])

    def to_seconds(ql: np.ndarray) -> np.ndarray:
        seg = np.searchsorted(starts_a, ql, side="right") - 1
        return base[seg] + (ql - starts_a[seg]) * spq[seg]
    return to_seconds
