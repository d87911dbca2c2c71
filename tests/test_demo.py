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

from coverhunter.audio import load_audio
from coverhunter.demo import (
    MANIFEST_COLUMNS, NATURAL_VARIANTS, DemoParams, Recipe, Tune, arrange, assemble,
    build_catalogue, corpus_index, demo_params, load_tune, melody_similarity,
    normalise_title, render_parts, render_version,
)

from conftest import ROOT

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
