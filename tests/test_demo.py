"""The embedded demo catalogue (coverhunter.demo): a tiny build, checked end to end."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from conftest import ROOT

from coverhunter.demo import (
    MANIFEST_COLUMNS,
    NATURAL_VARIANTS,
    DemoParams,
    Recipe,
    Tune,
    arrange,
    assemble,
    build_catalogue,
    corpus_index,
    demo_params,
    load_tune,
    melody_similarity,
    normalise_title,
    render_parts,
    render_version,
)
from coverhunter.features.audio import load_audio

RAW = yaml.safe_load((ROOT / "params.yaml").read_text())
SR = int(RAW["features"]["sample_rate"])


@pytest.fixture(scope="module")
def tiny() -> DemoParams:
    return demo_params(RAW, "tiny")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny: DemoParams):
    """One tiny catalogue, built twice into the same folder."""
    out = tmp_path_factory.mktemp("demo")
    first = build_catalogue(tiny, SR, out)
    manifest_bytes = (out / "manifest.csv").read_bytes()
    second = build_catalogue(tiny, SR, out)
    return out, first, second, manifest_bytes


def _tunes(out: Path) -> dict[str, Tune]:
    """The parsed tunes the build cached (no second parse)."""
    (cache,) = (out / "cache").glob("tunes-*.json")
    data = json.loads(cache.read_text())
    return {k: Tune.from_json(k, v) for k, v in data.items() if "error" not in v}


# ----------------------------------------------------------------------------- params


def test_tiny_is_the_full_section_with_the_tiny_overrides() -> None:
    full, tiny = demo_params(RAW, "full"), demo_params(RAW, "tiny")
    assert tiny == dataclasses.replace(full, **{k: tuple(v) if isinstance(v, list) else v
                                               for k, v in RAW["demo"]["tiny"].items()})
    assert demo_params(RAW) == (tiny if RAW["demo"]["size"] == "tiny" else full)
    assert full.n_works >= 60 and full.versions == (4, 6) and full.duration_s == (30.0, 120.0)


def test_bad_demo_keys_are_named() -> None:
    raw = {**RAW, "demo": {**RAW["demo"], "tiny": {"n_wroks": 3}}}
    with pytest.raises(ValueError, match="unknown key demo.tiny.n_wroks"):
        demo_params(raw)
    raw = {**RAW, "demo": {k: v for k, v in RAW["demo"].items() if k != "seed"}}
    with pytest.raises(ValueError, match="missing key demo.seed"):
        demo_params(raw)
    with pytest.raises(ValueError, match="demo.tempo"):
        dataclasses.replace(demo_params(RAW), tempo=(1.3, 0.75))


def test_bach_is_refused() -> None:
    with pytest.raises(ValueError, match="bach"):
        dataclasses.replace(demo_params(RAW), collections=["oneills1850", "bach"])
    with pytest.raises(ValueError, match="reserved"):
        corpus_index(["bach"])


# ----------------------------------------------------------------------------- the build


def test_manifest_columns_and_files(built, tiny: DemoParams) -> None:
    out, first, _, _ = built
    assert tuple(first.columns) == MANIFEST_COLUMNS
    on_disk = pd.read_csv(out / "manifest.csv")
    assert on_disk.recording_id.tolist() == first.recording_id.tolist()
    assert on_disk.recording_id.is_unique
    assert sorted(p.name for p in (out / "audio").iterdir()) == sorted(
        Path(a).name for a in first.audio_path)
    n_works = tiny.n_works + tiny.n_variant_works
    assert first.work_id.nunique() == n_works
    assert (first.groupby("work_id").size() == tiny.versions[0]).all()  # tiny: 3 each


def test_every_file_decodes_to_its_recorded_duration(built) -> None:
    out, first, _, _ = built
    for row in first.itertuples():
        info = sf.info(out / row.audio_path)
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        audio = load_audio(out / row.audio_path, SR)
        assert audio.size / SR == pytest.approx(row.duration_s, abs=0.1)
        assert audio.size == round(row.duration_s * SR)
        peak_db = 20 * np.log10(np.abs(audio).max())
        assert peak_db == pytest.approx(row.gain_db, abs=0.05)  # the loudness it records
    assert (first.duration_s.between(20.0, 25.0)).all()


def test_splits_are_by_work_and_variants_are_apart(built, tiny: DemoParams) -> None:
    _, first, _, _ = built
    assert (first.groupby("work_id").split.nunique() == 1).all()
    works = first.drop_duplicates("work_id").set_index("work_id").split
    assert set(works) == {"train", "val", "test", "test_variants"}
    assert works.value_counts().to_dict() == {"train": 4, "val": 1, "test": 1,
                                              "test_variants": tiny.n_variant_works}
    variant_titles = {t for t, _ in NATURAL_VARIANTS}
    variants = first[first.split == "test_variants"]
    assert set(variants.title) <= variant_titles
    for _, rows in variants.groupby("work_id"):
        assert rows.source.nunique() >= 2  # genuinely different settings of one tune
    assert not set(first[first.split != "test_variants"].title) & variant_titles


def test_no_bach_and_no_melody_shared_across_works(built, tiny: DemoParams) -> None:
    out, first, _, _ = built
    sources = pd.concat([first.source, first.intro_source, first.outro_source]).dropna()
    assert not sources.str.startswith("bach").any()
    # intro/outro material is unrelated: never a catalogue tune, each filler used once
    fillers = pd.concat([first.intro_source, first.outro_source]).dropna()
    assert fillers.is_unique and not set(fillers) & set(first.source)
    tunes = _tunes(out)
    work_tune = first.drop_duplicates("source")[["work_id", "source", "split"]]
    train = [tunes[s] for s in work_tune[work_tune.split == "train"].source]
    others = work_tune[work_tune.split != "train"]
    for row in others.itertuples():
        for t in train:
            assert melody_similarity(tunes[row.source], t, tiny.dedupe_ngram) \
                < tiny.dedupe_threshold, (row.source, t.ref)
    for title, refs in NATURAL_VARIANTS:  # no natural-variant tune hides in train by title
        banned = {normalise_title(title)} | {normalise_title(tunes[r].title) for r in refs
                                             if r in tunes}
        assert not {normalise_title(t) for t in first[first.split == "train"].title} & banned


def test_versions_of_a_work_differ(built) -> None:
    _, first, _, _ = built
    for _, rows in first.groupby("work_id"):
        assert rows.program.is_unique
        assert rows[["transpose", "tempo"]].drop_duplicates().shape[0] == len(rows)


def test_rebuild_is_identical_and_renders_nothing(built) -> None:
    out, first, second, manifest_bytes = built
    assert first.attrs["rendered"] == len(first) and first.attrs["reused"] == 0
    assert second.attrs["rendered"] == 0 and second.attrs["reused"] == len(first)
    assert (out / "manifest.csv").read_bytes() == manifest_bytes
    pd.testing.assert_frame_equal(first, second)


def test_a_missing_file_is_rendered_again_alone(built, tiny: DemoParams) -> None:
    out, first, _, manifest_bytes = built
    victim = out / first.audio_path.iloc[-1]
    before = load_audio(victim, SR)
    victim.unlink()
    again = build_catalogue(tiny, SR, out)
    assert again.attrs["rendered"] == 1
    np.testing.assert_array_equal(load_audio(victim, SR), before)  # deterministic audio
    assert (out / "manifest.csv").read_bytes() == manifest_bytes


# ----------------------------------------------------------------------------- pieces


def _line(pitches: list[int], note_s: float = 0.5) -> Tune:
    notes = np.array([[i * note_s, note_s, p, 100] for i, p in enumerate(pitches)], float)
    return Tune("test/line", "line", notes, len(pitches) * note_s)


def _recipe(**kw) -> Recipe:
    base = dict(recording_id="x-01", work_id="x", split="train", title="t", source="tune",
                program=0, transpose=0, tempo=1.0, duration_s=10.0, n_passes=1,
                cut_pass=-1, cut_section=-1, repeat_pass=-1, repeat_section=-1,
                intro_s=0.0, intro_source="", outro_s=0.0, outro_source="",
                reverb_rt60=0.0, reverb_wet=0.0, snr_db=None, noise_exponent=None,
                gain_db=-3.0, sections=4, fade_out_s=1.0, edge_fade_s=0.3, effects_seed=1)
    return Recipe(**{**base, **kw})


def test_arrange_loops_cuts_and_repeats_sections() -> None:
    tune = _line([60, 62, 64, 65, 67, 69, 71, 72])  # 4 s, sections of 1 s (2 notes each)
    notes, n_passes = arrange(tune, 8.0, 4)
    assert n_passes == 2 and notes[:, 0].tolist() == [i * 0.5 for i in range(16)]
    cut, n_passes = arrange(tune, 8.0, 4, cut=(0, 1))
    # pass 0 plays sections 0, 2, 3 (3 s, no 64 65), pass 1 all four, pass 2 the first second
    assert n_passes == 3
    assert cut[:, 2].tolist() == [60, 62, 67, 69, 71, 72, 60, 62, 64, 65, 67, 69, 71, 72, 60, 62]
    rep, _ = arrange(tune, 5.0, 4, repeat=(0, 2))  # section 2 (67 69) twice
    assert rep[:, 2].tolist() == [60, 62, 64, 65, 67, 69, 67, 69, 71, 72]
    short, _ = arrange(tune, 1.2, 4)  # truncated: the third note ends at 1.2 s
    assert short[:, 2].tolist() == [60, 62, 64] and short[-1, 1] == pytest.approx(0.2)


def _peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.fft.rfftfreq(audio.size, 1 / SR)[spectrum.argmax()])


@pytest.mark.parametrize("transpose", [0, 3, -5, 6])
def test_transpose_moves_the_dominant_pitch(transpose: int) -> None:
    tune = Tune("a4", "A4", np.array([[0.0, 2.0, 69, 100]]), 2.0)  # A4 = 440 Hz
    _, body, _ = render_parts(_recipe(source="a4", transpose=transpose, duration_s=2.0),
                              {"a4": tune}, SR)
    semitones = 12 * np.log2(_peak_hz(body[:SR]) / 440.0)  # the strongest partial may be
    offset = (semitones - transpose + 6) % 12 - 6           # the octave: compare pitch class
    assert abs(offset) < 0.35
    if transpose in (0, 3):  # here the fundamental is the strongest partial
        assert semitones == pytest.approx(transpose, abs=0.35)


def test_intro_is_unrelated_material_and_the_work_starts_at_intro_s() -> None:
    tune = load_tune("ryansMammoth/SoldiersJoy.abc#1")
    filler = load_tune("ryansMammoth/MoneyMuskReel.abc#6", expand_repeats=False)
    tunes = {"work": tune, "filler": filler}
    with_intro = _recipe(source="work", duration_s=12.0, intro_s=3.21, intro_source="filler")
    intro, body, outro = render_parts(with_intro, tunes, SR)
    n0 = round(3.21 * SR)
    assert intro.size == n0 and outro.size == 0 and body.size == round(12.0 * SR) - n0
    audio = assemble(intro, body, outro)
    np.testing.assert_array_equal(audio[n0:], body)
    # the same version without the intro is exactly the part after the intro
    _, plain, _ = render_parts(_recipe(source="work", duration_s=12.0 - 3.21), tunes, SR)
    np.testing.assert_array_equal(plain, body)
    # the intro is other music: audible, and not the tune's own opening
    assert np.sqrt(np.mean(intro**2)) > 0.01
    assert abs(np.corrcoef(intro, body[:n0])[0, 1]) < 0.3
    # finished without room or noise, the recording is the assembly scaled to its peak
    final = render_version(with_intro, tunes, SR)
    scale = 10 ** (-3.0 / 20) / np.abs(audio).max()
    np.testing.assert_allclose(final, audio * scale, atol=1e-6)


def test_melody_similarity_known_answers() -> None:
    melody = [62, 64, 66, 67, 69, 71, 69, 67, 66, 64, 62, 69, 74, 73, 71, 69, 67, 66]
    a = _line(melody)
    transposed = _line([p + 5 for p in melody], note_s=0.25)  # new key and rhythm
    assert melody_similarity(a, transposed) == 1.0
    other = _line([60, 67, 65, 72, 70, 62, 63, 74, 60, 61, 68, 57, 66, 70, 59, 71, 64, 75])
    assert melody_similarity(a, other) < 0.1


def test_natural_variant_settings_exist_in_the_corpus() -> None:
    index = dict(corpus_index(["essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs",
                               "miscFolk"]))
    variants_file = {ref for _, refs in NATURAL_VARIANTS for ref in refs
                     if ref.startswith("essenFolksong/variant0")}
    for title, refs in NATURAL_VARIANTS:
        assert len(refs) >= 2
        for ref in refs:  # every setting is a real tune (variant0 is kept out of the index)
            assert ref in index or ref in variants_file, (title, ref)


# ----------------------------------------------------------------------------- the band

from coverhunter.demo.accompany import (  # noqa: E402
    CRASH,
    KICK,
    SNARE,
    Chord,
    Key,
    bass_line,
    chord_part,
    diatonic_chords,
    drum_part,
    estimate_key,
    harmonise,
)
from coverhunter.demo.plan import Work, plan_work  # noqa: E402
from coverhunter.demo.render import soundfont_path  # noqa: E402
from coverhunter.demo.runner import Runner  # noqa: E402
from coverhunter.demo.selection import barred_tunes, select_works  # noqa: E402
from coverhunter.demo.synth import band_tracks  # noqa: E402
from coverhunter.demo.tune_store import TuneStore  # noqa: E402
from coverhunter.features import effects  # noqa: E402

C_MAJOR = {0, 2, 4, 5, 7, 9, 11}
# 4/4 at 120 qpm: a beat 0.5 s, a bar 2 s. Each bar: (pitch, beats) from the downbeat.
_BARS = [[(72, 2), (76, 1), (79, 1)],   # C E G          -> C
         [(69, 2), (65, 1), (72, 1)],   # A F C          -> F
         [(67, 2), (71, 1), (74, 1)],   # G B D          -> G
         [(72, 4)],                     # C              -> C
         [(74, 2), (77, 1), (81, 1)],   # D F A          -> Dm
         [(76, 2), (79, 1), (83, 1)],   # E G B          -> Em
         [(71, 2), (74, 1), (67, 1)],   # B D G: B, the strongest, is in G only -> G
         [(72, 4)]]                     # C              -> C
_EXPECTED = [Chord(0, "maj"), Chord(5, "maj"), Chord(7, "maj"), Chord(0, "maj"),
             Chord(2, "min"), Chord(4, "min"), Chord(7, "maj"), Chord(0, "maj")]


def _c_major_tune(bars: list[list[tuple[int, int]]] = _BARS) -> Tune:
    rows, t = [], 0.0
    for bar in bars:
        for pitch, n_beats in bar:
            rows.append([t, n_beats * 0.5, pitch, 100])
            t += n_beats * 0.5
    length = 2.0 * len(bars)
    return Tune("test/c-major", "C major", np.array(rows, float), length,
                np.arange(0.0, length, 0.5), np.arange(0.0, length, 2.0), 2)


def test_key_of_a_c_major_melody_and_its_chords() -> None:
    tune = _c_major_tune()
    key = estimate_key(tune.notes)
    assert key == Key(0, 0) and not key.minor and set(key.pcs) == C_MAJOR
    chords = dict(diatonic_chords(key))
    assert set(chords) == {Chord(r, q) for r, q in [(0, "maj"), (2, "min"), (4, "min"),
                                                    (5, "maj"), (7, "maj"), (9, "min")]}
    assert chords[Chord(0, "maj")] == 1.0  # the diminished B triad is never offered
    segments = harmonise(tune)
    assert [(s.start, s.end) for s in segments] == [(2.0 * i, 2.0 * i + 2.0) for i in range(8)]
    assert [s.chord for s in segments] == _EXPECTED
    for seg, bar in zip(segments, _BARS):
        assert set(seg.chord.pcs) <= C_MAJOR  # diatonic
        strongest = max(bar, key=lambda pn: pn[1])[0] % 12  # the long downbeat note
        assert strongest in seg.chord.pcs


def test_half_bar_chords_and_a_minor_key_and_a_pickup() -> None:
    halves = _c_major_tune([[(72, 1), (76, 1), (71, 1), (74, 1)], [(72, 4)]])
    assert [s.chord for s in harmonise(halves, half_bars=True)] == [
        Chord(0, "maj"), Chord(7, "maj"), Chord(0, "maj"), Chord(0, "maj")]
    # A harmonic minor: ends on A, uses G#: key A minor (scale of C), a major dominant
    minor = _c_major_tune([[(69, 2), (72, 1), (76, 1)], [(74, 2), (77, 1), (81, 1)],
                           [(76, 2), (80, 1), (71, 1)], [(69, 4)]])
    key = estimate_key(minor.notes)
    assert key == Key(9, 0) and key.minor
    assert [s.chord for s in harmonise(minor)] == [
        Chord(9, "min"), Chord(2, "min"), Chord(4, "maj"), Chord(9, "min")]
    # a one-beat pickup plays under the tune's last chord (the band goes on round)
    notes = np.array([[0.0, 0.5, 67, 100], *[[0.5 + r[0], r[1], r[2], 100]
                                             for r in _c_major_tune().notes[:, :3].tolist()]])
    pickup = Tune("test/pickup", "pickup", notes, 16.5, np.arange(0.0, 16.5, 0.5),
                  np.array([0.0, *np.arange(0.5, 16.5, 2.0)]), 2)
    segments = harmonise(pickup)
    assert segments[0].end == 0.5 and segments[0].chord == segments[-1].chord == Chord(0, "maj")
    assert [s.chord for s in segments[1:]] == _EXPECTED


@pytest.mark.parametrize("style", ["held", "root5", "walking"])
def test_bass_plays_roots_and_fifths_in_the_bass_register(style: str) -> None:
    tune = _c_major_tune()
    segments = harmonise(tune)
    bass = bass_line(segments, tune, style)
    assert bass.size and (bass[:, 1] > 0).all()
    for seg in segments:
        mine = bass[(bass[:, 0] >= seg.start) & (bass[:, 0] < seg.end)]
        pcs = [int(p) % 12 for p in mine[:, 2]]
        assert mine[0, 0] == seg.start and pcs[0] == seg.chord.root  # the root on the one
        if style == "walking":
            assert mine[:, 0].tolist() == [seg.start + 0.5 * k for k in range(4)]
            nxt = segments[(segments.index(seg) + 1) % len(segments)].chord.root
            assert (pcs[-1] - nxt) % 12 in (1, 11)  # a semitone from the next root
            assert set(pcs[1:3]) <= set(seg.chord.pcs)
            assert ((mine[:, 2] >= 38) & (mine[:, 2] <= 53)).all()
        else:
            assert set(pcs) <= {seg.chord.root, seg.chord.fifth}
            assert ((mine[:, 2] >= 40) & (mine[:, 2] <= 51)).all()
    held = bass_line(segments, tune, "held")
    assert held[:, 0].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]
    assert bass_line(segments, tune, "root5")[:2, 2].tolist() == [48, 43]  # C3 then G2


def test_hymn_harmonises_the_tune_in_four_parts_on_every_beat() -> None:
    tune = _c_major_tune()
    segments = harmonise(tune)
    hymn = chord_part(segments, tune, "hymn")
    onsets = sorted(set(hymn[:, 0].tolist()))
    assert onsets == [0.5 * k for k in range(32)]            # a chord on every beat
    for t in onsets:
        voices = sorted(hymn[hymn[:, 0] == t, 2].astype(int).tolist())
        chord = next(s.chord for s in segments if s.start <= t < s.end)
        sounding = tune.notes[(tune.notes[:, 0] <= t) & (tune.notes[:, 0] + tune.notes[:, 1] > t)]
        top = int(sounding[:, 2].max())
        bass, tenor, alto = voices
        assert {tenor % 12, alto % 12} <= set(chord.pcs)      # inner voices: chord tones
        assert 3 <= top - alto <= 12 and 3 <= alto - tenor <= 12   # under the tune, spaced
        assert bass % 12 == chord.root and 40 <= bass <= 51   # the root in E2-D#3
    # the first beat: C5 over a C major chord -> G4 and E4 inside, C3 in the bass
    assert sorted(hymn[hymn[:, 0] == 0.0, 2].astype(int).tolist()) == [48, 64, 67]
    assert (hymn[:, 1] > 0).all() and (hymn[:, 0] + hymn[:, 1] <= 16.0).all()
    # a bar of rest (bar 7 left out): voiced under the last note before it, B5 (83)
    rest = dataclasses.replace(tune, notes=tune.notes[(tune.notes[:, 0] < 12.0) | (tune.notes[:, 0] >= 14.0)])
    hymn = chord_part(harmonise(rest), rest, "hymn")
    for t in (12.0, 12.5, 13.0, 13.5):
        alto = max(hymn[hymn[:, 0] == t, 2])
        assert 83 - 12 <= alto <= 83 - 3


def test_drum_patterns_follow_the_beats() -> None:
    tune = _c_major_tune()
    rock = drum_part(tune, "rock")
    kicks = rock[rock[:, 2] == KICK, 0].tolist()
    snares = rock[rock[:, 2] == SNARE, 0].tolist()
    assert kicks == [2.0 * b + o for b in range(8) for o in (0.0, 1.0)]  # beats 1 and 3
    assert snares == [2.0 * b + o for b in range(8) for o in (0.5, 1.5)]  # beats 2 and 4
    assert rock[rock[:, 2] == CRASH, 0].tolist() == [0.0]
    assert (rock[:, 2] == 42).sum() == 8 * 8  # hi-hat on every eighth
    for pattern in ("folk", "brush", "march"):
        notes = drum_part(tune, pattern)
        assert set(notes[:, 2].astype(int)) <= set(range(35, 82))  # GM percussion keys
        assert KICK in notes[:, 2]


def _band_recipe(**kw) -> Recipe:
    base = dict(style="pad", harmony="bar", bass="held", drums="rock", accomp_programs="48;33",
                mix_db="0;-6;-3;-6", program=73)
    return _recipe(**{**base, **kw})


def test_band_tracks_follow_the_melody_and_leave_a_tacet_section() -> None:
    tune = _c_major_tune()
    r = _band_recipe(style="strum+pad", accomp_programs="25;48;33", mix_db="0;-6;-9;-3;-6",
                     melody_octave=-1, tacet_pass=1, tacet_section=2)
    tracks = band_tracks(r, tune, 32.0, 4, tacet=(1, 2))
    melody, strum, pad, bass, drums = tracks
    assert [t.program for t in tracks[:4]] == [73, 25, 48, 33] and drums.drums
    assert [t.gain_db for t in tracks] == [0.0, -6.0, -9.0, -3.0, -6.0]
    assert not any(t.drums for t in tracks[:4])
    assert melody.notes[0, 2] == 60  # an octave down
    # the second pass's third section (s 24-28) has no melody, the band plays on
    in_tacet = lambda n: n[(n[:, 0] >= 24.0) & (n[:, 0] < 28.0)]  # noqa: E731
    assert in_tacet(melody.notes).size == 0
    assert all(in_tacet(t.notes).size for t in (strum, pad, bass, drums))
    assert melody.notes.shape[0] == 2 * len(tune.notes) - 6  # two passes less bars 5-6
    # a cut section (bars 3-4) is cut for the whole band: bar 5 (D F A, Dm) follows bar 2
    cut = band_tracks(r, tune, 12.0, 4, cut=(0, 1))
    assert cut[0].notes[:7, 2].tolist() == [60, 64, 67, 57, 53, 60, 62]
    assert cut[3].notes[:4, 2].tolist() == [48, 41, 50, 40]  # roots C, F, D, E
    assert cut[3].notes[:4, 0].tolist() == [0.0, 2.0, 4.0, 6.0]


def test_a_band_version_has_bass_and_percussive_onsets() -> None:
    """The same tune, melody alone vs band: the band puts energy in the bass register
    (under 200 Hz) and sharp hi-hat onsets on every eighth (energy above 5 kHz just after
    each eighth, decayed an eighth later); a flute melody of long notes has neither."""
    import librosa
    tune = _c_major_tune([[(72, 4)], [(76, 4)], [(79, 4)], [(72, 4)]])  # whole notes
    tunes = {"tune": tune}
    melody = _recipe(source="tune", program=73, duration_s=8.0, fade_out_s=0.1)
    band = _band_recipe(source="tune", duration_s=8.0, fade_out_s=0.1)
    hop = 64

    def measures(x: np.ndarray) -> tuple[float, float]:
        power = np.abs(librosa.stft(x, n_fft=512, hop_length=hop)) ** 2
        freqs = librosa.fft_frequencies(sr=SR, n_fft=512)
        low = power[freqs < 200].sum() / power.sum()
        high = power[freqs >= 5000].sum(axis=0)
        at = lambda dt: np.median([high[round((k * 0.25 + dt) * SR / hop)]  # noqa: E731
                                   for k in range(31)])
        return float(low), float(at(0.015) / at(0.15))

    (low_a, onset_a), (low_b, onset_b) = (measures(render_version(r, tunes, SR))
                                          for r in (melody, band))
    assert low_b > 0.03 and low_a < 0.003
    assert onset_b > 5.0 and onset_a < 2.0


def test_shelf_eq_and_compressor_known_answers() -> None:
    t = np.arange(SR) / SR
    rms = lambda x: 20 * np.log10(np.sqrt(np.mean(x[SR // 4:] ** 2)))  # noqa: E731
    for hz, expected in ((60, 6.0), (1000, 0.0), (6000, -6.0)):
        x = np.sin(2 * np.pi * hz * t).astype(np.float32)
        assert rms(effects.shelf_eq(x, SR, 6.0, -6.0)) - rms(x) == pytest.approx(expected, abs=0.3)
    quiet, loud = 0.01 * np.sin(2 * np.pi * 440 * t), 0.8 * np.sin(2 * np.pi * 440 * t)
    y = effects.compress(np.concatenate([quiet, loud]).astype(np.float32), SR, -20.0, 4.0)
    assert rms(y[:SR]) == pytest.approx(rms(quiet), abs=0.05)  # under the threshold
    # -4.95 dB RMS is 15 dB over -20: 15 / 4 over it after the compressor
    assert rms(y[SR:]) == pytest.approx(-20.0 + (rms(loud) + 20.0) / 4.0, abs=0.3)
    np.testing.assert_array_equal(effects.compress(loud, SR, -20.0, 1.0), loud.astype(np.float32))


# ----------------------------------------------------------------------------- presets


def test_large_preset() -> None:
    large, full = demo_params(RAW, "large"), demo_params(RAW, "full")
    assert large.n_works >= 3000 and large.versions[0] >= 4 and large.p_band > 0
    assert set(large.soundfonts) == {"timgm6mb", "fluidr3mono"}
    assert large.exclude_splits == ["val", "test", "test_variants"]
    assert large.out_dir != full.out_dir and "bach" not in large.collections
    assert large.duration_s[1] <= 60.0
    # the reference demo stays the melody alone on one soundfont, no exclusion
    assert full.p_band == 0.0 and full.soundfonts == ["timgm6mb"] and not full.exclude_splits
    with pytest.raises(ValueError, match="reference"):
        build_catalogue(large, SR, "/nonexistent")


def _generality_preset(size: str) -> tuple:
    """A generality check's preset, with what both checks share asserted: every work
    scored (no training split), none of the demo's tunes, a soundfont the demo's models
    never heard, a folder of its own. Returns it with the full and large presets."""
    check, full, large = (demo_params(RAW, s) for s in (size, "full", "large"))
    assert check.split_fractions == {"train": 0.0, "val": 0.0, "test": 1.0} and check.n_variant_works == 0
    assert check.exclude_splits == ["train", "val", "test", "test_variants"]
    assert not set(check.soundfonts) & set(full.soundfonts)
    assert check.out_dir not in (full.out_dir, large.out_dir) and "bach" not in check.collections
    return check, full, large


def test_polyphonic_preset_draws_on_music_no_catalogue_trains_on() -> None:
    poly, full, large = _generality_preset("polyphonic")
    assert not set(poly.collections) & (set(full.collections) | set(large.collections))


def test_homophonic_preset_harmonises_tunes_of_none_of_the_demo_works() -> None:
    homo, full, large = _generality_preset("homophonic")
    assert homo.p_band == 1.0 and list(homo.chord_styles) == ["hymn"]
    assert "hymn" not in full.chord_styles and "hymn" not in large.chord_styles  # their draws stay
    assert homo.p_bass == homo.p_drums == homo.p_tacet == homo.p_second_chords == 0.0


def test_an_excluding_preset_never_plays_the_reference_evaluation_tunes(built, tiny) -> None:
    """A small `large`: the tiny demo as reference, 12 works. Its candidate stream starts
    like the tiny demo's, so without the exclusion it would take the tiny val/test tunes."""
    out = built[0]
    small = dataclasses.replace(demo_params(RAW, "large"), n_works=12, workers=1)
    store = TuneStore(out / "cache", Runner(1))
    barred = barred_tunes(tiny, small.exclude_splits, store, 8)
    ref = built[1].drop_duplicates("work_id")
    evaluation = ref[ref.split.isin(small.exclude_splits)]
    assert {t.ref for t in barred} == set(built[1][built[1].split.isin(
        small.exclude_splits)].source)  # every setting of every evaluation work
    open_ = select_works(small, store, 8)  # no exclusion
    assert set(evaluation[evaluation.split != "test_variants"].source) <= set(open_.tunes)
    chosen = select_works(small, store, 8, barred)
    assert len(chosen.works) == 12
    for tune in chosen.tunes.values():
        assert tune.ref not in {b.ref for b in barred}
        for b in barred:
            assert melody_similarity(tune, b, small.dedupe_ngram) < small.dedupe_threshold
            assert normalise_title(tune.title) != normalise_title(b.title)
    store.save()


def _tiny_band(out: Path, workers: int) -> pd.DataFrame:
    fonts = ["timgm6mb", "fluidr3mono"]
    try:
        soundfont_path("fluidr3mono")
    except FileNotFoundError:
        fonts = ["timgm6mb"]
    p = dataclasses.replace(demo_params(RAW, "tiny"), n_works=3, n_variant_works=0,
                            versions=(3, 3), duration_s=(10.0, 12.0), intro_s=(1.0, 3.0),
                            outro_s=(1.0, 3.0), p_band=0.8, soundfonts=fonts,
                            workers=workers)
    return build_catalogue(p, SR, out)


def test_a_split_of_its_own_gets_bands_and_leaves_every_other_version_as_it_was(tiny) -> None:
    """`p_band_splits: {train: 1}`: every training version is a band, the others stay the
    melody alone, drawn exactly as without the key (their recordings stay byte-identical)."""
    tune = _c_major_tune()
    melody_only = dataclasses.replace(tiny, p_band=0.0, p_band_splits={}, versions=(6, 6))
    bands_in_training = dataclasses.replace(melody_only, p_band_splits={"train": 1.0})
    for split in ("train", "test", "test_variants"):
        work = Work("w01", "C major", split, [tune.ref])
        before, after = (plan_work(p, work, {tune.ref: tune}, SR) for p in (melody_only, bands_in_training))
        assert all("style" not in v for v in before)
        if split == "train":
            assert all(v["style"] != "melody" and v["accomp_programs"] for v in after)
            assert [{k: x for k, x in v.items() if k in before[0]} for v in after] == before
        else:
            assert after == before
    with pytest.raises(ValueError, match="demo.p_band_splits must map some of test, test_variants, train, val"):
        dataclasses.replace(melody_only, p_band_splits={"training": 0.5})
    with pytest.raises(ValueError, match="demo.p_band_splits"):
        dataclasses.replace(melody_only, p_band_splits={"train": 1.5})


def test_a_band_catalogue_is_byte_reproducible(tmp_path: Path) -> None:
    first = _tiny_band(tmp_path / "a", workers=1)
    second = _tiny_band(tmp_path / "b", workers=2)  # another folder, another worker count
    assert second.attrs["rendered"] == len(first)
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == \
        (tmp_path / "b" / "manifest.csv").read_bytes()
    for path in first.audio_path:
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()
    again = _tiny_band(tmp_path / "a", workers=1)
    assert again.attrs["rendered"] == 0
    # the draws are recorded, and both kinds of version are there
    style = first["style"]  # (DataFrame.style is pandas' Styler)
    assert (style != "melody").sum() >= 4
    bands = first[style != "melody"]
    for row in bands.itertuples():
        parts = row.style.split("+")
        n_programs = len(parts) + isinstance(row.bass, str)
        assert len(str(row.accomp_programs).split(";")) == n_programs
        assert len(str(row.mix_db).split(";")) == 1 + n_programs + isinstance(row.drums, str)
        assert set(parts) <= {"strum", "arpeggio", "pad", "comp"}
    assert set(first.soundfont) <= {"timgm6mb", "fluidr3mono"}
    if "fluidr3mono" in first.soundfont.values:
        assert set(first.soundfont) == {"timgm6mb", "fluidr3mono"}  # both drawn and rendered
    for path in first.audio_path:
        audio = load_audio(tmp_path / "a" / path, SR)
        assert np.sqrt(np.mean(audio**2)) > 1e-3
