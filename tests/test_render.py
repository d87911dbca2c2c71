"""Offline rendering of music21 scores (coverhunter.demo.render)."""

from __future__ import annotations

import numpy as np
import pytest
from music21 import chord, note, stream, tempo

from coverhunter.demo.render import load_corpus_score, render_score, score_to_midi

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


# ----------------------------------------------------------------------------- several tracks

from coverhunter.demo.render import (  # noqa: E402
    DRUM_CHANNEL,
    SOUNDFONTS,
    Track,
    render_tracks,
    soundfont_path,
    track_channels,
)


def _has_soundfont(name: str) -> bool:
    try:
        soundfont_path(name)
    except FileNotFoundError:
        return False
    return True


needs_fluid = pytest.mark.skipif(not _has_soundfont("fluidr3mono"),
                                 reason="apt-get install fluidr3mono-gm-soundfont")


def _band_level(audio: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / SR)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum() / spectrum.sum())


def test_drums_go_to_channel_10_and_pitched_tracks_never_do() -> None:
    tracks = [Track(np.zeros((0, 4)), 0)] * 9 + [Track(np.zeros((0, 4)), drums=True)] \
        + [Track(np.zeros((0, 4)), 33)] * 3
    channels = track_channels(tracks)
    assert DRUM_CHANNEL == 9 and channels[9] == 9
    assert channels[:9] + channels[10:] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12]
    with pytest.raises(ValueError, match="one drum track"):
        track_channels([Track(np.zeros((0, 4)), drums=True)] * 2)


def test_a_drum_key_is_a_drum_not_a_pitch() -> None:
    """Key 42 on the drum channel is a closed hi-hat (noise, mostly above 4 kHz); the same
    key on a piano is F#2 (92.5 Hz) with nothing up there."""
    note = np.array([[0.0, 0.3, 42, 110]])
    hat = render_tracks([Track(note, drums=True)], SR, tail_s=0.2)
    piano = render_tracks([Track(note, PIANO)], SR, tail_s=0.2)
    assert _band_level(hat, 4000, 8000) > 0.3
    assert _band_level(piano, 4000, 8000) < 0.01
    # drums are never transposed; pitched tracks are
    moved = render_tracks([Track(note, drums=True)], SR, transpose=5, tail_s=0.2)
    assert np.array_equal(moved, hat)
    up = render_tracks([Track(np.array([[0.0, 2.0, 69, 100]]), PIANO)], SR, transpose=12)
    assert _peak_hz(up) == pytest.approx(880.0, rel=0.02)


def test_tracks_mix_with_their_levels_and_lengths() -> None:
    a4 = Track(np.array([[0.0, 2.0, 69, 100]]), PIANO)
    alone = render_tracks([a4], SR, n_samples=SR)
    assert alone.shape == (SR,) and alone.dtype == np.float32
    quieter = render_tracks([Track(a4.notes, PIANO, gain_db=-12.0)], SR, n_samples=SR)
    ratio_db = 20 * np.log10(np.sqrt(np.mean(quieter**2)) / np.sqrt(np.mean(alone**2)))
    assert ratio_db == pytest.approx(-12.0, abs=0.5)
    c3 = Track(np.array([[0.0, 2.0, 48, 100]]), 33)  # a bass note under it
    both = render_tracks([a4, c3], SR, n_samples=SR)
    assert _band_level(both, 100, 200) > 10 * _band_level(alone, 100, 200)
    assert render_tracks([a4], SR, tempo_scale=2.0, tail_s=0.0).size == SR  # 2 s at double speed
    np.testing.assert_array_equal(render_tracks([a4], SR, n_samples=SR), alone)  # deterministic


def test_the_bundled_soundfont_is_known_and_unknown_ones_are_refused() -> None:
    assert soundfont_path("timgm6mb").name == "TimGM6mb.sf2"
    assert set(SOUNDFONTS) >= {"timgm6mb", "fluidr3mono"}
    with pytest.raises(ValueError, match="unknown soundfont"):
        soundfont_path("merlin")


@needs_fluid
def test_both_soundfonts_render_the_same_notes_differently() -> None:
    notes = Track(np.array([[0.0, 1.0, 60, 100], [1.0, 1.0, 67, 100]]), 24)
    drums = Track(np.array([[0.0, 0.2, 36, 110], [1.0, 0.2, 38, 110]]), drums=True)
    tim = render_tracks([notes, drums], SR, soundfont_path("timgm6mb"), n_samples=2 * SR)
    fluid = render_tracks([notes, drums], SR, soundfont_path("fluidr3mono"), n_samples=2 * SR)
    for audio in (tim, fluid):
        assert np.sqrt(np.mean(audio**2)) > 0.01
        assert _peak_hz(audio[SR // 4:SR]) == pytest.approx(261.6, rel=0.03) or \
            _peak_hz(audio[SR // 4:SR]) == pytest.approx(523.3, rel=0.03)  # C4 or its octave
    assert abs(np.corrcoef(tim, fluid)[0, 1]) < 0.9
