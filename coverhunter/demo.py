"""The embedded demo catalogue: real corpus tunes rendered offline as cover versions.

No cover-song audio can be downloaded here (shared/STACK.md), so the demo catalogue is
made from the folk-tune collections in the music21 corpus. Each *work* is one tune. Its
*versions* differ the way covers do:

- instrument: a different General MIDI program for each version of a work;
- key (``transpose`` semitones) and tempo (``tempo`` × the score's tempo, at MIDI level);
- structure: the tune is played as many times (*passes*) as the version's length needs,
  as folk musicians do; one section of one pass may be cut or played twice; an unrelated
  tune may be added as an intro or an outro. The intro length is recorded, to the sample,
  for the alignment stage;
- recording: room reverb, added coloured noise at a random SNR, and loudness.

*Natural variants*: where the corpus holds genuinely different settings of one tune (the
same tune in two or three books, or the variant sets of the Essen collection), those
settings are the versions of one work. These works form their own split
(``variants_split``, ``test_variants`` by default); their tunes never appear in any other
split. The groups in :data:`NATURAL_VARIANTS` were checked by melody (see the notes there).

The Bach chorales are never used (they are held for an independent evaluation).

Public entry points: :class:`DemoParams`, :func:`demo_params` (reads the ``demo:`` section
of ``params.yaml``) and :func:`build_catalogue` (writes ``<out>/audio/*.flac`` and
``<out>/manifest.csv``, and returns the manifest). Run it by hand with
``python -m coverhunter.demo [--size tiny] [--out DIR]``.

Everything is deterministic: the same parameters (and code) give a byte-identical
manifest. A version whose FLAC exists and carries the same recipe hash (in the FLAC's
comment tag) is not rendered again, so an interrupted build resumes where it stopped.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import mido
import music21
import numpy as np
from music21 import bar as m21_bar
from music21 import corpus as m21_corpus
from music21 import harmony as m21_harmony
from music21 import stream as m21_stream
from music21 import tempo as m21_tempo
import pandas as pd
import soundfile as sf
import yaml
from tqdm import tqdm

from coverhunter import effects
from coverhunter.params import section
from coverhunter.render import DEFAULT_SOUNDFONT, load_corpus_score, render_score

__all__ = [
    "MANIFEST_COLUMNS", "NATURAL_VARIANTS", "DemoParams", "Recipe", "Tune", "arrange",
    "assemble", "build_catalogue", "clean_title", "corpus_index", "demo_params", "load_tune",
    "melody_similarity", "normalise_title", "notes_to_midi", "render_parts",
    "render_version", "section_bounds",
]

log = logging.getLogger(__name__)

# Bump when a change to tune extraction (load_tune) changes the notes of a tune: the
# cache of parsed tunes is then rebuilt. (Rendered audio needs no such number: a recipe's
# hash covers the source of the modules that make the audio, see Recipe.digest.)
EXTRACT_VERSION = 1

_DEFAULT_QPM = 120.0        # music21's MIDI translation uses 120 qpm when a score has no tempo
_QPM_LIMITS = (40.0, 240.0)  # a tempo mark outside this is a transcription slip; clamp it
_DEFAULT_VELOCITY = 90       # ABC tunes carry no dynamics; music21's MIDI default
_RESERVED_COLLECTION = "bach"  # independent evaluation only (shared/STACK.md)
# Essen files that hold the natural-variant sets and test copies of other Essen songs:
# never drawn as ordinary works.
_EXCLUDED_FILES = frozenset({
    "essenFolksong/variant0.abc", "essenFolksong/test0.abc", "essenFolksong/test1.abc",
    "essenFolksong/testd.abc", "essenFolksong/teste.abc",
})

# Natural variants: (work title, corpus settings as "collection/file#number").
# Checked by melody: for each group the settings' pitch sequences were compared note by
# note (and by shared interval 4-grams, 0.2-0.9 within a group against a median of 0.03
# between unrelated tunes); identical copies (americanfifeopus N vs N+100, the duplicated
# O'Neill files) were left out. Fisher's Hornpipe: O'Neill's "1st/2nd setting" share the
# first strain's opening and part later; Ryan's is the same tune in F. Green Sleeves:
# Aird's differs in rhythm and ornament. Money Musk: Aird's strathspey in G, Ryan's reel
# and strathspey in A (O'Neill's #1361 "The Money Musk" is a different tune, left out).
# Essen V0002-V0006: the variant sets of the Essen collection (its own "V" numbering).
NATURAL_VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Ritter und Magd", ("essenFolksong/ballad30.abc#1", "essenFolksong/ballad30.abc#2")),
    ("The Minstrel Boy", ("oneills1850/0201-0300.abc#203", "miscFolk/americanfifeopus.abc#24")),
    ("Fisher's Hornpipe", ("oneills1850/1556-1576.abc#1575", "oneills1850/1556-1576.abc#1576",
                           "ryansMammoth/FishersHornpipe.abc#1")),
    ("Green Sleeves", ("airdsAirs/book1.abc#130", "oneills1850/0981-1000.abc#994",
                       "ryansMammoth/GreenSleevesJig.abc#14")),
    ("Money Musk", ("airdsAirs/book4.abc#681", "ryansMammoth/MoneyMuskReel.abc#6",
                    "ryansMammoth/MoneyMuskStrathspey.abc#1")),
    ("Soldier's Joy", ("oneills1850/1625-1700.abc#1642", "ryansMammoth/SoldiersJoy.abc#1",
                       "airdsAirs/book1.abc#109")),
    ("Jackson's Morning Brush", ("oneills1850/0811-0899.abc#899",
                                 "ryansMammoth/JacksonsMorningBrushJig.abc#1",
                                 "airdsAirs/book1.abc#22")),
    ("Devil's Dream", ("oneills1850/1556-1576.abc#1564", "ryansMammoth/DevilsDreamReel.abc#10")),
    ("Nelson's Victory", ("oneills1850/1701-1780.abc#1712",
                          "ryansMammoth/NelsonsVictoryHornpipe.abc#1")),
    ("Es geht nix ueber die Gemuetlichkeit (Essen V0002)",
     tuple(f"essenFolksong/variant0.abc#{i}" for i in range(4, 12))),
    ("Siehgst an, do kummt er (Essen V0003)",
     tuple(f"essenFolksong/variant0.abc#{i}" for i in range(12, 22))),
    ("Der Buechabecher Boder (Essen V0005)",
     tuple(f"essenFolksong/variant0.abc#{i}" for i in range(22, 26))),
    ("Das Madl von der Gmaa (Essen V0006)",
     tuple(f"essenFolksong/variant0.abc#{i}" for i in range(26, 30))),
)

MANIFEST_COLUMNS = (
    "recording_id", "work_id", "audio_path", "split", "duration_s", "title",
    # ground truth of how the version was made (see Recipe)
    "source", "program", "transpose", "tempo", "n_passes", "cut_pass", "cut_section",
    "repeat_pass", "repeat_section", "intro_s", "intro_source", "outro_s", "outro_source",
    "reverb_rt60", "reverb_wet", "snr_db", "noise_exponent", "gain_db", "recipe_hash",
)


# --------------------------------------------------------------------------- parameters

_RANGES = ("versions", "pass_s", "duration_s", "transpose", "tempo", "intro_s", "outro_s",
           "rt60_s", "reverb_wet", "snr_db", "noise_exponent", "peak_db")
_PROBABILITIES = ("p_cut", "p_repeat", "p_intro", "p_outro", "p_reverb", "p_noise")


@dataclass(frozen=True)
class DemoParams:
    """The ``demo:`` section of ``params.yaml`` (every key documented there).

    Ranges are ``[low, high]`` pairs (inclusive for integers, uniform draws for floats).
    The sample rate is not here: it is ``features.sample_rate``, passed to
    :func:`build_catalogue`.
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
        if self.collections and _RESERVED_COLLECTION in self.collections:
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


# --------------------------------------------------------------------------- tunes


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


def corpus_index(collections: Sequence[str]) -> list[tuple[str, str]]:
    """``(ref, title)`` of every tune in the named music21 corpus collections, in file order.

    ``ref`` is ``"collection/file.abc#number"`` for a tune of a multi-tune ABC file and
    ``"collection/file"`` for a single-work file (e.g. ``.krn``). Reads the ABC text
    directly (``X:`` and ``T:`` lines), so it costs a fraction of a second, not a parse.
    """
    root = Path(m21_corpus.__file__).resolve().parent
    out: list[tuple[str, str]] = []
    for coll in collections:
        if coll == _RESERVED_COLLECTION:
            raise ValueError("the Bach chorales (corpus 'bach/') are reserved for independent "
                             "evaluation and may not be used for demo data")
        folder = root / coll
        if not folder.is_dir():
            raise ValueError(f"no music21 corpus collection named {coll!r} (in {root})")
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            name = f"{coll}/{path.name}"
            if name in _EXCLUDED_FILES or path.suffix.lower() not in (".abc", ".krn", ".xml",
                                                                     ".mxl", ".musicxml"):
                continue
            if path.suffix.lower() != ".abc":
                out.append((name, path.stem))
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            for m in re.finditer(r"^X:\s*(\d+)(.*?)(?=^X:|\Z)", text, re.M | re.S):
                title = re.search(r"^T:\s*(.*?)\s*$", m.group(2), re.M)
                out.append((f"{name}#{int(m.group(1))}", clean_title(title.group(1))
                            if title else ""))
    return out


def clean_title(title: str) -> str:
    """A corpus title made readable: the Essen files keep DOS (code page 437) umlauts as
    C1 control characters (U+0084 for 'ä'); those are decoded, other controls dropped."""
    fixed = title.translate(_C1_AS_CP437)
    if not fixed.isprintable():
        fixed = "".join(c for c in fixed if c.isprintable())
    return fixed.strip()


_C1_AS_CP437 = {c: bytes([c]).decode("cp437") for c in range(0x80, 0xA0)}


def load_tune(ref: str, title: str = "", *, expand_repeats: bool = True) -> Tune:
    """Parse one corpus tune (``"collection/file#number"``) into a :class:`Tune`.

    Goes through :func:`coverhunter.render.load_corpus_score` (which refuses the Bach
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
    return Tune(ref, title, notes, float(to_s(np.array([end_ql]))[0]))


_SECTION_BARS = frozenset({"double", "final", "light-light", "light-heavy", "heavy-light",
                           "heavy-heavy"})


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


def _ngrams(melody: np.ndarray, n: int, max_intervals: int = 64) -> set[tuple[int, ...]]:
    iv = np.diff(melody[: max_intervals + 1]).astype(int).tolist()
    return {tuple(iv[i:i + n]) for i in range(len(iv) - n + 1)}


def melody_similarity(a: Tune, b: Tune, n: int = 4) -> float:
    """Share of melodic interval ``n``-grams (first 64 intervals) two tunes have in common.

    Transposition-invariant (intervals) and insensitive to rhythm (repeated pitches are
    merged): |A ∩ B| / min(|A|, |B|). 1.0 for copies; 0.6-0.9 for many settings of one
    tune; about 0.03 (median) for unrelated tunes.
    """
    return _containment(_ngrams(a.melody, n), _ngrams(b.melody, n))


def _containment(ga: set, gb: set) -> float:
    return len(ga & gb) / min(len(ga), len(gb)) if ga and gb else 0.0


def normalise_title(title: str) -> str:
    """A title reduced for matching: lower case, letters only, no tune-type words."""
    t = re.sub(r"\(.*?\)|--.*$", "", title.lower())
    t = re.sub(r"\b(the|reel|jig|hornpipe|strathspey|air|march|set|setting|1st|2nd|3rd|no|"
               r"a|an)\b", "", t)
    return re.sub(r"[^a-z]", "", t)


# --------------------------------------------------------------------------- arrangement


def section_bounds(tune: Tune, n_sections: int) -> np.ndarray:
    """Boundaries (s) of ``n_sections`` near-equal sections of one pass, at note onsets.

    Shape ``(k + 1,)`` with ``k <= n_sections`` (fewer when the tune has too few onsets):
    ``0, b_1, ..., length_s``. For an AABB tune with 4 sections these are the strains.
    """
    onsets = np.unique(tune.notes[:, 0])
    inner = []
    for k in range(1, n_sections):
        b = float(onsets[np.abs(onsets - k * tune.length_s / n_sections).argmin()])
        if b > (inner[-1] if inner else 0.0) and b < tune.length_s:
            inner.append(b)
    return np.array([0.0, *inner, tune.length_s])


def arrange(tune: Tune, length_s: float, n_sections: int,
            cut: tuple[int, int] | None = None,
            repeat: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
    """The tune played pass after pass for ``length_s`` seconds (tune time), with edits.

    ``cut = (pass, section)`` leaves that section out of that pass; ``repeat = (pass,
    section)`` plays it twice in a row in that pass. Notes are shifted into place,
    notes starting at or after ``length_s`` are dropped and the rest end by ``length_s``.
    Returns ``(notes (n, 4), n_passes)``, ``n_passes`` = passes begun.
    """
    bounds = section_bounds(tune, n_sections)
    n_sec = bounds.size - 1
    pieces, t, n_pass = [], 0.0, 0
    while t < length_s:
        order = list(range(n_sec))
        if cut is not None and cut[0] == n_pass and cut[1] < n_sec and n_sec > 1:
            order.remove(cut[1])
        if repeat is not None and repeat[0] == n_pass and repeat[1] in order:
            order.insert(order.index(repeat[1]) + 1, repeat[1])
        for s in order:
            start, end = bounds[s], bounds[s + 1]
            sel = tune.notes[(tune.notes[:, 0] >= start) & (tune.notes[:, 0] < end)].copy()
            sel[:, 0] += t - start
            pieces.append(sel)
            t += end - start
        n_pass += 1
    notes = np.concatenate(pieces) if pieces else np.zeros((0, 4))
    notes = notes[notes[:, 0] < length_s]
    notes[:, 1] = np.minimum(notes[:, 1], length_s - notes[:, 0])
    return notes, n_pass


def notes_to_midi(notes: np.ndarray) -> bytes:
    """Standard MIDI File bytes (one track, channel 0, 120 qpm) of a ``(n, 4)`` note array
    (onset s, duration s, pitch, velocity), for :func:`coverhunter.render.render_score`."""
    ticks_per_s = 960  # 480 ticks per quarter at 120 qpm
    events = []
    for onset, dur, pitch, vel in notes:
        on, off = round(onset * ticks_per_s), round((onset + dur) * ticks_per_s)
        if off > on:
            events.append((on, 1, int(pitch), int(np.clip(vel, 1, 127))))
            events.append((off, 0, int(pitch), 0))
    events.sort()  # at one tick, note-offs (0) before note-ons (1)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000, time=0)])
    now = 0
    for tick, kind, pitch, vel in events:
        msg = "note_on" if kind else "note_off"
        track.append(mido.Message(msg, note=pitch, velocity=vel, time=tick - now))
        now = tick
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)
    buf = io.BytesIO()
    midi.save(file=buf)
    return buf.getvalue()


# --------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Recipe:
    """Everything that decides one version's audio (and its manifest row).

    Times are seconds of the finished recording. The work's tune starts at ``intro_s``
    (sample ``round(intro_s · sr)``) and is played ``n_passes`` times (the last pass cut
    short by the recording's end) at ``tempo`` × the score's tempo, ``transpose``
    semitones away, on General MIDI ``program``. ``cut_pass``/``cut_section``: that
    section (of :func:`section_bounds` with ``sections``) is left out of that pass (0-based;
    -1: no cut); ``repeat_pass``/``repeat_section``: played twice. ``intro_source`` /
    ``outro_source``: the unrelated corpus tune of the intro / outro ("" when none).
    ``reverb_rt60 = 0``: dry; ``snr_db = None``: no added noise (``noise_exponent``: its
    colour). ``gain_db`` is the recording's final peak level in dBFS.
    """
    recording_id: str
    work_id: str
    split: str
    title: str
    source: str
    program: int
    transpose: int
    tempo: float
    duration_s: float
    n_passes: int
    cut_pass: int
    cut_section: int
    repeat_pass: int
    repeat_section: int
    intro_s: float
    intro_source: str
    outro_s: float
    outro_source: str
    reverb_rt60: float
    reverb_wet: float
    snr_db: float | None
    noise_exponent: float | None
    gain_db: float
    sections: int
    fade_out_s: float
    edge_fade_s: float
    effects_seed: int

    def digest(self, sample_rate: int) -> str:
        """Hash of the recipe and everything else that shapes its audio: the sample rate,
        the soundfont, the music21 version and the source of the rendering modules (so
        an edit to them renders every version again)."""
        payload = {"recipe": dataclasses.asdict(self), "sample_rate": sample_rate,
                   "code": _code_digest(), "extract_version": EXTRACT_VERSION,
                   "music21": music21.__version__, "soundfont": [
                       DEFAULT_SOUNDFONT.name, DEFAULT_SOUNDFONT.stat().st_size]}
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@functools.cache
def _code_digest() -> str:
    """Hash of the modules that turn a recipe into audio (this one, effects, render)."""
    from coverhunter import render
    h = hashlib.sha256()
    for module_file in (__file__, effects.__file__, render.__file__):
        h.update(Path(module_file).read_bytes())
    return h.hexdigest()[:16]


def _stable_int(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big")


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float], digits: int) -> float:
    return round(float(rng.uniform(*lo_hi)), digits)


@dataclass
class _Work:
    work_id: str
    title: str
    split: str
    settings: list[str]  # corpus refs of the tune (one, or several natural settings)


def _plan_work(p: DemoParams, work: _Work, tunes: Mapping[str, Tune],
               sample_rate: int) -> list[dict[str, Any]]:
    """Draw every version of one work (fillers still unassigned: ``intro_source = "?"``).

    Each work and version has its own random stream, keyed by the seed and the work's
    first setting, so adding works leaves the others' versions unchanged.
    """
    key = work.settings[0]
    rng = np.random.default_rng([p.seed, 1, _stable_int(key)])
    n_versions = int(rng.integers(p.versions[0], p.versions[1] + 1))
    settings = [work.settings[i] for i in rng.permutation(len(work.settings))]
    if len(settings) > 1:  # every natural setting is heard (as far as versions allow)
        n_versions = max(n_versions, min(len(settings), p.versions[1]))
    programs = rng.choice(p.programs, size=n_versions, replace=len(p.programs) < n_versions)
    plans = []
    for k in range(n_versions):
        v = np.random.default_rng([p.seed, 2, _stable_int(key), k])
        source = settings[k % len(settings)]
        tune = tunes[source]
        duration = _uniform(v, p.duration_s, 2)
        transpose = int(v.integers(p.transpose[0], p.transpose[1] + 1))
        tempo = _uniform(v, p.tempo, 3)
        has_intro, intro = v.random() < p.p_intro, _uniform(v, p.intro_s, 2)
        has_outro, outro = v.random() < p.p_outro, _uniform(v, p.outro_s, 2)
        has_cut, cut_sec, cut_u = v.random() < p.p_cut, int(v.integers(p.sections)), v.random()
        has_rep, rep_sec, rep_u = v.random() < p.p_repeat, int(v.integers(p.sections)), v.random()
        has_reverb, rt60, wet = (v.random() < p.p_reverb, _uniform(v, p.rt60_s, 2),
                                 _uniform(v, p.reverb_wet, 2))
        has_noise, snr, exponent = (v.random() < p.p_noise, _uniform(v, p.snr_db, 2),
                                    _uniform(v, p.noise_exponent, 2))
        gain = _uniform(v, p.peak_db, 2)
        effects_seed = int(v.integers(2**62))

        intro = intro if has_intro else 0.0
        outro = outro if has_outro else 0.0
        n_body = _n(duration, sample_rate) - _n(intro, sample_rate) - _n(outro, sample_rate)
        body_tune_s = n_body / sample_rate * tempo
        full_passes = int(body_tune_s // tune.length_s)
        n_sec = section_bounds(tune, p.sections).size - 1
        cut = rep = None  # edits only where a whole pass fits, in one of the whole passes
        if full_passes and n_sec > 1:
            if has_cut and cut_sec < n_sec:
                cut = (int(cut_u * full_passes), cut_sec)
            if has_rep and rep_sec < n_sec and (int(rep_u * full_passes), rep_sec) != cut:
                rep = (int(rep_u * full_passes), rep_sec)
        _, n_passes = arrange(tune, body_tune_s, p.sections, cut, rep)
        plans.append(dict(
            recording_id=f"{work.work_id}-{k + 1:02d}", work_id=work.work_id, split=work.split,
            title=work.title, source=source, program=int(programs[k]), transpose=transpose,
            tempo=tempo, duration_s=duration, n_passes=n_passes,
            cut_pass=cut[0] if cut else -1, cut_section=cut[1] if cut else -1,
            repeat_pass=rep[0] if rep else -1, repeat_section=rep[1] if rep else -1,
            intro_s=intro, intro_source="?" if intro else "",
            outro_s=outro, outro_source="?" if outro else "",
            reverb_rt60=rt60 if has_reverb else 0.0, reverb_wet=wet if has_reverb else 0.0,
            snr_db=snr if has_noise else None, noise_exponent=exponent if has_noise else None,
            gain_db=gain, sections=p.sections, fade_out_s=p.fade_out_s,
            edge_fade_s=p.edge_fade_s, effects_seed=effects_seed))
    return plans


def _n(seconds: float, sample_rate: int) -> int:
    return round(seconds * sample_rate)


# --------------------------------------------------------------------------- rendering


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` cropped or zero-padded to exactly ``n`` samples."""
    return x[:n] if x.size >= n else np.concatenate([x, np.zeros(n - x.size, x.dtype)])


def _render_notes(notes: np.ndarray, n_samples: int, r: Recipe, sample_rate: int) -> np.ndarray:
    if n_samples <= 0:
        return np.zeros(0, np.float32)
    if notes.size == 0:
        return np.zeros(n_samples, np.float32)
    audio = render_score(notes_to_midi(notes), sample_rate, program=r.program,
                         transpose=r.transpose, tempo_scale=r.tempo, tail_s=0.0)
    return _fit(audio, n_samples)


def render_parts(r: Recipe, tunes: Mapping[str, Tune],
                 sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The dry ``(intro, body, outro)`` of a version, each mono float32 at ``sample_rate``.

    The body is the work's tune arranged (passes, cut, repeat) and played with the
    version's program, key and tempo; intro and outro are the unrelated filler tunes
    played the same way. Lengths are exactly ``round(intro_s·sr)``, the rest, and
    ``round(outro_s·sr)`` samples. Edges get short fades; the last part fades out.
    """
    n_intro, n_outro = _n(r.intro_s, sample_rate), _n(r.outro_s, sample_rate)
    n_body = _n(r.duration_s, sample_rate) - n_intro - n_outro
    cut = (r.cut_pass, r.cut_section) if r.cut_pass >= 0 else None
    rep = (r.repeat_pass, r.repeat_section) if r.repeat_pass >= 0 else None
    body_notes, _ = arrange(tunes[r.source], n_body / sample_rate * r.tempo, r.sections, cut, rep)
    body = _render_notes(body_notes, n_body, r, sample_rate)
    body = effects.fade(body, sample_rate, out_s=r.edge_fade_s if n_outro else r.fade_out_s)
    intro = outro = np.zeros(0, np.float32)
    if n_intro:
        notes, _ = arrange(tunes[r.intro_source], r.intro_s * r.tempo, 1)
        intro = effects.fade(_render_notes(notes, n_intro, r, sample_rate), sample_rate,
                             out_s=r.edge_fade_s)
    if n_outro:
        notes, _ = arrange(tunes[r.outro_source], r.outro_s * r.tempo, 1)
        outro = effects.fade(_render_notes(notes, n_outro, r, sample_rate), sample_rate,
                             in_s=r.edge_fade_s, out_s=r.fade_out_s)
    return intro, body, outro


def assemble(intro: np.ndarray, body: np.ndarray, outro: np.ndarray) -> np.ndarray:
    """``intro + body + outro`` end to end: the body starts at sample ``len(intro)``."""
    return np.concatenate([intro, body, outro]).astype(np.float32)


def render_version(r: Recipe, tunes: Mapping[str, Tune], sample_rate: int) -> np.ndarray:
    """The finished recording: :func:`render_parts`, assembled, then the room (reverb),
    added coloured noise at ``snr_db`` and the final peak level ``gain_db`` (dBFS)."""
    x = assemble(*render_parts(r, tunes, sample_rate))
    rng = np.random.default_rng(r.effects_seed)
    if r.reverb_rt60 > 0:
        x = effects.reverb(x, sample_rate, r.reverb_rt60, r.reverb_wet, rng)
    if r.snr_db is not None:
        noise = effects.coloured_noise(x.size, r.noise_exponent or 0.0, rng)
        x = effects.mix_at_snr(effects.peak_normalise(x), noise, r.snr_db)
    return effects.gain_db(effects.peak_normalise(x, 1.0), r.gain_db)


_HASH_TAG = "coverhunter-demo recipe "


def _cached(path: Path, digest: str) -> bool:
    """True when ``path`` is a readable FLAC made from the recipe with this hash."""
    try:
        with sf.SoundFile(path) as f:
            return f.comment == _HASH_TAG + digest
    except Exception:  # noqa: BLE001 - missing, partial or foreign file: render again
        return False


def _render_job(job: tuple[dict[str, Any], dict[str, dict[str, Any]], int, str, str]) -> str:
    """Worker: render one version and write it as 16-bit FLAC (tmp file, then rename)."""
    recipe, tune_data, sample_rate, path, digest = job
    tunes = {ref: Tune.from_json(ref, d) for ref, d in tune_data.items()}
    audio = render_version(Recipe(**recipe), tunes, sample_rate)
    tmp = Path(path).with_suffix(".tmp.flac")
    with sf.SoundFile(tmp, "w", samplerate=sample_rate, channels=1, subtype="PCM_16",
                      format="FLAC") as f:
        f.comment = _HASH_TAG + digest
        f.write(audio)
    os.replace(tmp, path)
    return recipe["recording_id"]


def _load_job(job: tuple[str, str, bool]) -> dict[str, Any]:
    """Worker: parse one tune; a tune music21 cannot read is recorded, not raised."""
    ref, title, expand = job
    try:
        return load_tune(ref, title, expand_repeats=expand).to_json()
    except Exception as err:  # noqa: BLE001 - the corpus has a few malformed tunes
        return {"error": f"{type(err).__name__}: {err}"[:300]}


# --------------------------------------------------------------------------- selection

T = TypeVar("T")
R = TypeVar("R")


class _Runner:
    """Maps a job function over items in order, on a process pool when workers > 1."""

    def __init__(self, workers: int) -> None:
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count() or 1)
        self.workers = workers or cores
        self._pool: Executor | None = None

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterable[R]:
        if self.workers <= 1 or len(items) <= 1:
            return map(fn, items)
        if self._pool is None:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx)
        return self._pool.map(fn, items, chunksize=1)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


class _TuneStore:
    """Parsed tunes, cached as JSON in ``<out>/cache`` (reading the corpus is the slow part)."""

    def __init__(self, cache_dir: Path, runner: _Runner) -> None:
        key = hashlib.sha256(f"{music21.__version__}/{EXTRACT_VERSION}".encode()).hexdigest()[:8]
        self.path = cache_dir / f"tunes-{key}.json"
        self.data: dict[str, dict[str, Any]] = (
            json.loads(self.path.read_text()) if self.path.is_file() else {})
        self.runner = runner
        self.dirty = False

    @staticmethod
    def _key(ref: str, expand: bool) -> str:
        return ref if expand else ref + "|as-written"

    def fetch(self, items: Sequence[tuple[str, str]], expand: bool,
              desc: str = "demo: reading corpus tunes") -> list[Tune | None]:
        """Tunes for ``(ref, title)`` items (None where the tune cannot be read)."""
        todo = [(r, t, expand) for r, t in dict(items).items()
                if self._key(r, expand) not in self.data]
        if todo:
            results = self.runner.map(_load_job, todo)
            for (ref, _, _), res in tqdm(zip(todo, results), total=len(todo), desc=desc,
                                         unit="tune", leave=False):
                self.data[self._key(ref, expand)] = res
            self.dirty = True
        out: list[Tune | None] = []
        for ref, _ in items:
            d = self.data[self._key(ref, expand)]
            out.append(None if "error" in d else Tune.from_json(ref, d))
        return out

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, sort_keys=True))
            os.replace(tmp, self.path)
            self.dirty = False


@dataclass
class _Selector:
    """Accepts candidate tunes that are usable and unlike every tune accepted so far."""
    p: DemoParams
    titles: set[str] = field(default_factory=set)
    grams: list[set[tuple[int, ...]]] = field(default_factory=list)  # of each chosen tune

    def usable(self, tune: Tune | None) -> bool:
        p = self.p
        return (tune is not None and len(tune.notes) >= p.min_notes
                and p.pass_s[0] <= tune.length_s <= p.pass_s[1])

    def novel(self, tune: Tune, title: str) -> bool:
        norm = normalise_title(title)
        if norm and norm in self.titles:
            return False
        grams = _ngrams(tune.melody, self.p.dedupe_ngram)
        return all(_containment(grams, other) < self.p.dedupe_threshold for other in self.grams)

    def add(self, tune: Tune, title: str) -> None:
        self.grams.append(_ngrams(tune.melody, self.p.dedupe_ngram))
        if normalise_title(title):
            self.titles.add(normalise_title(title))


def _candidate_order(p: DemoParams, index: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Every candidate once: each collection shuffled by the seed, collections interleaved."""
    rng = np.random.default_rng([p.seed, 4])
    per_coll = []
    for coll in p.collections:
        items = [it for it in index if it[0].split("/", 1)[0] == coll]
        per_coll.append([items[i] for i in rng.permutation(len(items))])
    order = []
    for k in range(max(map(len, per_coll), default=0)):
        order.extend(lst[k] for lst in per_coll if k < len(lst))
    return order


def _take(store: _TuneStore, sel: _Selector, stream: list[tuple[str, str]], start: int,
          count: int, expand: bool, batch: int, desc: str) -> tuple[list[Tune], int]:
    """Accept ``count`` tunes from ``stream[start:]`` (parsed in batches); returns the
    accepted tunes and the position after the last candidate examined."""
    accepted: list[Tune] = []
    pos = start
    while len(accepted) < count and pos < len(stream):
        want = count - len(accepted)
        chunk = stream[pos:pos + max(batch, want + want // 4)]
        for (ref, title), tune in zip(chunk, store.fetch(chunk, expand, desc)):
            pos += 1
            if sel.usable(tune) and sel.novel(tune, title):
                sel.add(tune, title)
                accepted.append(dataclasses.replace(tune, title=title or tune.title))
                if len(accepted) == count:
                    break
    if len(accepted) < count:
        raise ValueError(f"demo: only {len(accepted)} of {count} usable, distinct tunes in "
                         f"collections {', '.join(sel.p.collections)}; lower the count or "
                         "add collections")
    return accepted, pos


def _split_counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder counts; every split with a positive share gets a work when n allows."""
    names = list(fractions)
    raw = [n * fractions[s] for s in names]
    counts = [math.floor(x) for x in raw]
    for i in sorted(range(len(names)), key=lambda i: raw[i] - counts[i], reverse=True):
        if sum(counts) >= n:
            break
        counts[i] += 1
    positive = [i for i, s in enumerate(names) if fractions[s] > 0]
    if n >= len(positive):
        for i in positive:
            while counts[i] == 0:
                donor = max(range(len(names)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return dict(zip(names, counts))


def _select(p: DemoParams, store: _TuneStore,
            batch: int) -> tuple[list[_Work], dict[str, Tune], _Selector, list, int]:
    """Natural-variant works first (their melodies are then barred from the rest), then
    ``n_works`` ordinary works, deduplicated by title and melody."""
    sel = _Selector(p)
    tunes: dict[str, Tune] = {}
    works: list[_Work] = []
    index = corpus_index(p.collections)
    titles = dict(index)
    # bar every natural-variant melody and title, used or not
    all_settings = [(ref, titles.get(ref, "")) for _, refs in NATURAL_VARIANTS for ref in refs]
    loaded = dict(zip([r for r, _ in all_settings],
                      store.fetch(all_settings, True, "demo: reading variant settings")))
    n_var = 0
    for title, refs in NATURAL_VARIANTS:
        ok = [r for r in refs if sel.usable(loaded[r])]
        for r in refs:
            if loaded[r] is not None:
                sel.add(loaded[r], titles.get(r, ""))
        sel.titles.add(normalise_title(title))
        if len(ok) >= 2 and n_var < p.n_variant_works:
            n_var += 1
            works.append(_Work(f"v{n_var:02d}", title, p.variants_split, ok))
            tunes.update({r: dataclasses.replace(loaded[r], title=title) for r in ok})
    if n_var < p.n_variant_works:
        raise ValueError(f"demo.n_variant_works = {p.n_variant_works}, but only {n_var} "
                         "natural-variant works are available")

    stream = _candidate_order(p, index)
    chosen, pos = _take(store, sel, stream, 0, p.n_works, True, batch,
                        "demo: choosing works")
    counts = _split_counts(p.n_works, p.split_fractions)
    perm = np.random.default_rng([p.seed, 3]).permutation(p.n_works)
    split_of = np.empty(p.n_works, dtype=object)
    start = 0
    for split, c in counts.items():
        split_of[perm[start:start + c]] = split
        start += c
    for i, tune in enumerate(chosen):
        works.append(_Work(f"w{i + 1:03d}", tune.title, str(split_of[i]), [tune.ref]))
        tunes[tune.ref] = tune
    return works, tunes, sel, stream, pos


# --------------------------------------------------------------------------- the catalogue


def build_catalogue(p: DemoParams, sample_rate: int, out_dir: Path | str) -> pd.DataFrame:
    """Build (or bring up to date) the demo catalogue in ``out_dir`` and return its manifest.

    Writes ``out_dir/audio/<recording_id>.flac`` (16-bit mono at ``sample_rate``) and
    ``out_dir/manifest.csv`` (columns :data:`MANIFEST_COLUMNS`; ``audio_path`` relative
    to the manifest). Parsed tunes are cached in ``out_dir/cache``; versions whose FLAC
    already carries their recipe hash are kept, and FLACs of versions no longer in the
    catalogue are removed. The returned frame is the manifest as read back from the CSV
    (empty text and missing numbers are NaN: ``intro_source`` without an intro,
    ``snr_db`` without noise). ``df.attrs`` holds ``rendered`` and ``reused`` counts.
    """
    out_dir = Path(out_dir)
    audio_dir = out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    runner = _Runner(p.workers)
    try:
        store = _TuneStore(out_dir / "cache", runner)
        batch = 8 * runner.workers
        try:
            works, tunes, sel, stream, pos = _select(p, store, batch)
            plans = [plan for w in works for plan in _plan_work(p, w, tunes, sample_rate)]
            # fillers: one unrelated tune per intro/outro, each used once
            slots = [(i, k) for i, plan in enumerate(plans) for k in ("intro", "outro")
                     if plan[f"{k}_source"] == "?"]
            fillers, _ = _take(store, sel, stream, pos, len(slots), False, batch,
                               "demo: choosing intro/outro tunes")
        finally:
            store.save()
        for (i, k), tune in zip(slots, fillers):
            plans[i][f"{k}_source"] = tune.ref
            tunes[tune.ref] = tune

        recipes = [Recipe(**plan) for plan in plans]
        rows, jobs = [], []
        for r in recipes:
            digest = r.digest(sample_rate)
            path = audio_dir / f"{r.recording_id}.flac"
            row = dataclasses.asdict(r)
            row.update(audio_path=f"audio/{path.name}", recipe_hash=digest)
            rows.append(row)
            if not _cached(path, digest):
                needed = {s: tunes[s].to_json() for s in (r.source, r.intro_source,
                                                          r.outro_source) if s}
                jobs.append((dataclasses.asdict(r), needed, sample_rate, str(path), digest))
        for _ in tqdm(runner.map(_render_job, jobs), total=len(jobs), unit="version",
                      desc="demo: rendering", disable=not jobs):
            pass
    finally:
        runner.close()

    keep = {f"{r.recording_id}.flac" for r in recipes}
    for stale in audio_dir.iterdir():
        if stale.is_file() and stale.name not in keep:
            stale.unlink()
    manifest = pd.DataFrame(rows)
    manifest["duration_s"] = [
        _n(r.duration_s, sample_rate) / sample_rate for r in recipes]
    tmp = out_dir / "manifest.csv.tmp"
    manifest[list(MANIFEST_COLUMNS)].to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, out_dir / "manifest.csv")
    manifest = pd.read_csv(out_dir / "manifest.csv")  # exactly what a reader of the file gets
    manifest.attrs.update(rendered=len(jobs), reused=len(recipes) - len(jobs))
    log.info("demo catalogue: %d works, %d versions (%d rendered, %d reused) in %s",
             manifest.work_id.nunique(), len(manifest), len(jobs), len(recipes) - len(jobs),
             out_dir)
    return manifest


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m coverhunter.demo``: build the catalogue from ``params.yaml``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--size", choices=["full", "tiny"], default=None,
                    help="override demo.size")
    ap.add_argument("--out", default=None, help="override demo.out_dir")
    args = ap.parse_args(argv)
    raw = yaml.safe_load(Path(args.params).read_text())
    p = demo_params(raw, args.size)
    df = build_catalogue(p, int(raw["features"]["sample_rate"]), args.out or p.out_dir)
    print(f"{len(df)} versions of {df.work_id.nunique()} works, "
          f"{df.duration_s.sum() / 3600:.2f} h; rendered {df.attrs['rendered']}, "
          f"reused {df.attrs['reused']}")
    print(df.groupby("split").work_id.nunique().to_string())


if __name__ == "__main__":
    main()
