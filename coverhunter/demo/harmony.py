"""The harmony of a tune, for its band arrangements: its key, and one chord per bar.

- :func:`estimate_key`: the major scale that holds most of the melody (so modal tunes keep
  their own notes) and the final note as tonic;
- :func:`harmonise`: one chord per bar (or half bar): the major or minor triad of the
  key's scale that contains the segment's strongest melody pitch class and best covers
  its other notes (with a mild preference for the primary chords, for keeping the chord,
  and for the tonic at the end). A pickup bar takes the tune's last chord (the band plays
  on from the previous pass).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coverhunter.demo.tune import Tune

# Krumhansl-Kessler probe-tone profiles, from the tonic up
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_QUALITY = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6)}
_LEADING_TONE_SHARE = 0.03  # a minor tune using its raised 7th this much gets a major V

_EPS = 1e-6
_ON_BAR, _ON_BEAT, _OFF_BEAT = 1.0, 0.75, 0.5  # metric weight of a melody onset


@dataclass(frozen=True)
class Key:
    """A key: its ``tonic`` pitch class (0 = C) and ``scale``, the pitch class of the major
    scale it uses (C major and A minor or dorian: 0; D mixolydian: 7)."""
    tonic: int
    scale: int

    @property
    def pcs(self) -> tuple[int, ...]:
        """The seven pitch classes of the scale, from the tonic up."""
        ring = [(self.scale + i) % 12 for i in _MAJOR_SCALE]
        k = ring.index(self.tonic)
        return tuple(ring[k:] + ring[:k])

    @property
    def minor(self) -> bool:
        """True when the tonic triad is minor (aeolian, dorian, phrygian)."""
        return (self.pcs[2] - self.tonic) % 12 == 3


@dataclass(frozen=True)
class Chord:
    """A triad: ``root`` pitch class and ``quality`` (``maj``, ``min`` or ``dim``)."""
    root: int
    quality: str

    @property
    def pcs(self) -> tuple[int, int, int]:
        """Root, third and fifth as pitch classes."""
        return tuple((self.root + i) % 12 for i in _QUALITY[self.quality])

    @property
    def fifth(self) -> int:
        return self.pcs[2]


@dataclass(frozen=True)
class Segment:
    """A stretch of one pass (s, tune time) played over one chord."""
    start: float
    end: float
    chord: Chord


def _histogram(notes: np.ndarray) -> np.ndarray:
    """Duration-weighted pitch classes of ``notes`` ``(n, 4)``: shape ``(12,)``."""
    hist = np.zeros(12)
    np.add.at(hist, notes[:, 2].round().astype(int) % 12, notes[:, 1])
    return hist


def estimate_key(notes: np.ndarray) -> Key:
    """The key of a melody ``(n, 4)``: the major scale holding most of its sounding time
    (ties: the lowest pitch class from C), and as tonic the final note (the lowest of a
    final chord), as folk tunes end on their tonic, unless that note is outside the scale
    or on its diminished degree; then the scale degree whose major or minor
    Krumhansl-Kessler profile fits the pitch classes best."""
    hist = _histogram(notes)
    inside = [sum(hist[(root + i) % 12] for i in _MAJOR_SCALE) for root in range(12)]
    scale = int(np.argmax(np.round(inside, 9)))
    ring = [(scale + i) % 12 for i in _MAJOR_SCALE]
    last = notes[notes[:, 0] == notes[:, 0].max()]
    final = int(round(last[:, 2].min())) % 12 if notes.size else scale
    if final in ring and final != ring[6]:
        return Key(final, scale)
    best, best_r = Key(scale, scale), -np.inf
    for tonic in ring[:6]:  # never the diminished degree
        key = Key(tonic, scale)
        profile = _MINOR_PROFILE if key.minor else _MAJOR_PROFILE
        r = np.corrcoef(hist, np.roll(profile, tonic))[0, 1] if hist.std() > 0 else 0.0
        if r > best_r + 1e-12:
            best, best_r = key, r
    return best


def diatonic_chords(key: Key, leading_tone: bool = False) -> list[tuple[Chord, float]]:
    """The major and minor triads on the degrees of the key's scale (the diminished one
    left out), with their preference: the tonic chord 1.0, the chords a fourth and a
    fifth above it 0.8, the others 0.4; tonic chord first. With ``leading_tone`` (a
    minor tune that uses the note a semitone below its tonic) the chord on the fifth is
    major, as in harmonic minor."""
    pcs = key.pcs
    out = []
    for i, root in enumerate(pcs):
        third, fifth = (pcs[(i + 2) % 7] - root) % 12, (pcs[(i + 4) % 7] - root) % 12
        if fifth != 7:
            continue  # the diminished triad
        quality = "maj" if third == 4 else "min"
        step = (root - key.tonic) % 12
        if step == 7 and quality == "min" and leading_tone:
            quality = "maj"
        prior = 1.0 if step == 0 else 0.8 if step in (5, 7) else 0.4
        out.append((Chord(root, quality), prior))
    return out


def _segment_bounds(tune: Tune, half_bars: bool) -> list[tuple[float, float]]:
    """Chord segments of one pass: the bars (and a stretch before the first bar line),
    bars of 4 or more beats (an even number) split at their middle beat if ``half_bars``."""
    beats, bars, _ = tune.grid()
    edges = sorted({0.0, *bars.tolist()} - {tune.length_s})
    edges = [e for e in edges if e < tune.length_s] + [tune.length_s]
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        inside = beats[(beats >= a - _EPS) & (beats < b - _EPS)]
        if half_bars and inside.size >= 4 and inside.size % 2 == 0:
            mid = float(inside[inside.size // 2])
            out += [(a, mid), (mid, b)]
        else:
            out.append((a, b))
    return out


def _pc_weights(tune: Tune, a: float, b: float, beats: np.ndarray, bars: np.ndarray) -> np.ndarray:
    """Weight of each pitch class in ``[a, b)``: the time each note sounds there times the
    metric weight of its onset (on a bar line, on a beat, between beats)."""
    w = np.zeros(12)
    n = tune.notes
    on, end = n[:, 0], n[:, 0] + n[:, 1]
    sel = (on < b - _EPS) & (end > a + _EPS)
    for onset, stop, pitch in zip(on[sel], end[sel], n[sel, 2]):
        overlap = min(stop, b) - max(onset, a)
        if np.any(np.abs(bars - onset) < 1e-3):
            metric = _ON_BAR
        elif np.any(np.abs(beats - onset) < 1e-3):
            metric = _ON_BEAT
        else:
            metric = _OFF_BEAT
        w[int(round(pitch)) % 12] += overlap * metric
    return w


def harmonise(tune: Tune, half_bars: bool = False, key: Key | None = None) -> list[Segment]:
    """One chord per bar (or half bar) of one pass of ``tune`` (see the module doc).

    Every chord is a diatonic triad of ``key`` (estimated when None) and, where one of
    them can, contains the segment's strongest melody pitch class (largest weight of
    :func:`_pc_weights`). A segment without melody keeps the previous chord (the tonic
    at the start). A short first bar (a pickup) takes the last segment's chord.
    """
    beats, bars, _ = tune.grid()
    key = key or estimate_key(tune.notes)
    hist = _histogram(tune.notes)
    leading = key.minor and hist[(key.tonic + 11) % 12] >= _LEADING_TONE_SHARE * hist.sum()
    candidates = diatonic_chords(key, bool(leading))
    tonic = candidates[0][0]
    bounds = _segment_bounds(tune, half_bars)
    bar_len = float(np.median(np.diff(bars))) if bars.size > 1 else tune.length_s
    chords: list[Chord] = []
    prev = tonic
    for i, (a, b) in enumerate(bounds):
        w = _pc_weights(tune, a, b, beats, bars)
        total = float(w.sum())
        if total <= 0:
            chords.append(prev)
            continue
        strongest = int(w.argmax())
        pool = [(c, p) for c, p in candidates if strongest in c.pcs] or candidates
        last = i == len(bounds) - 1
        best, best_score = pool[0][0], -np.inf
        for chord, prior in pool:
            inside = sum(w[pc] for pc in chord.pcs)
            score = (inside - 0.5 * (total - inside)
                     + total * (0.15 * prior + 0.1 * (chord == prev)
                                + 0.3 * (last and chord == tonic)))
            if score > best_score + 1e-12:
                best, best_score = chord, score
        chords.append(best)
        prev = best
    if len(bounds) > 1 and bounds[0][1] - bounds[0][0] < 0.75 * bar_len:
        chords[0] = chords[-1]  # pickup: the band plays on from the end of the tune
    return [Segment(a, b, c) for (a, b), c in zip(bounds, chords)]
