"""Offline rendering of music21 scores (coverhunter.render)."""

from __future__ import annotations

import numpy as np
import pytest
from music21 import chord, note, stream, tempo

from coverhunter.render import load_corpus_score, render_score, score_to_midi

SR = 16_000
PIANO = 0  # General MIDI "Acoustic Grand Piano": its strongest partial is the fundamental


def _melody(pitches: list[str], quarter_length: float, bpm: int = 120) -> stream.Stream:
    s = stream.Stream([tempo.MetronomeMark(number=bpm)])
    for p in pitches:
        s.append(note.Note(p, quarterLength=quarter_length))
    return s


def _peak_hz(audio: np.ndarray, sample_rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / sample_rate)[spectrum.argmax()])


A4_TWO_SECONDS = _melody(["A4"], quarter_length=4)  # 4 beats at 120 qpm = 2 s


def test_sustained_a4_peaks_at_440_hz() -> None:
    audio = render_score(A4_TWO_SECONDS, SR, program=PIANO)
    assert _peak_hz(audio) == pytest.approx(440.0, rel=0.02)


def test_transpose_octave_moves_peak_to_880_hz() -> None:
    audio = render_score(A4_TWO_SECONDS, SR, program=PIANO, transpose=12)
    assert _peak_hz(audio) == pytest.approx(880.0, rel=0.02)


def test_double_tempo_halves_duration() -> None:
    melody = _melody(["C4", "D4", "E4", "F4"], quarter_length=1)  # 2 s of notes
    normal = render_score(melody, SR, tail_s=0.0)
    fast = render_score(melody, SR, tempo_scale=2.0, tail_s=0.0)
    assert len(normal) / SR == pytest.approx(2.0, rel=0.05)
    assert len(fast) / len(normal) == pytest.approx(0.5, rel=0.15)
    # the release tail is added after scaling, not scaled itself
    assert len(render_score(melody, SR, tempo_scale=2.0)) / SR == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("gain_db", [0.0, 40.0])  # +40 dB on a chord forces the anti-clip path
def test_output_is_finite_mono_float32_within_unit_peak(gain_db: float) -> None:
    s = stream.Stream([chord.Chord(["C3", "G3", "C4", "E4", "G4", "C5"], quarterLength=2)])
    audio = render_score(s, SR, program=19, gain_db=gain_db)
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0
    assert np.isfinite(audio).all()
    assert 0.0 < np.abs(audio).max() <= 1.0


def test_midi_bytes_render_like_the_stream() -> None:
    melody = _melody(["G4", "B4", "D5"], quarter_length=0.5)
    from_bytes = render_score(score_to_midi(melody), SR)
    np.testing.assert_array_equal(render_score(melody, SR), from_bytes)


def test_empty_score_is_refused() -> None:
    with pytest.raises(ValueError, match="empty score"):
        render_score(stream.Stream(), SR)
    with pytest.raises(ValueError, match="empty score"):
        render_score(stream.Stream([note.Rest(quarterLength=4)]), SR)


@pytest.mark.parametrize("name", ["bach/bwv66.6", "bwv66.6"])
def test_corpus_refuses_bach_chorales(name: str) -> None:
    with pytest.raises(ValueError, match="reserved for independent evaluation"):
        load_corpus_score(name)


def test_corpus_loads_a_folk_tune_and_renders_it() -> None:
    tune = load_corpus_score("essenFolksong/ballad80", number=1)  # "Graf und Nonne", 16 s
    assert tune.metadata.title.startswith("Graf und Nonne")
    audio = render_score(tune, SR)
    assert 10.0 < len(audio) / SR < 30.0
