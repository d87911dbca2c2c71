"""Manifest validation with a real Great Expectations suite over real audio files.

The valid catalogue: 3 works × 2 versions in train, 2 works × 2 in test, 1 work × 2 in
val, 16 s sine tones at 16 kHz as FLAC. Each broken variant changes one thing and must be
named (recording_id and CSV line, header = line 1) in the exception and in the JSON report,
with every row still present in the returned table.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth import tone

from coverhunter.catalogue.manifest import ManifestError, read_manifest, recordings_in
from coverhunter.catalogue.validation import (
    COMPUTED_COLUMNS,
    ManifestValidationError,
    raise_for_failures,
    validate_manifest,
)
from coverhunter.features.audio import AudioDecodeError, probe_audio

RATE = 16000
SPLITS = ["train", "val", "test", "test_variants"]
TEST_SETS = ["test", "test_variants"]
MIN_S = 15.0
HEADER = ["recording_id", "work_id", "audio_path", "split", "title"]
VALID = [  # recording_id, work_id, audio file, split, title
    ("r01", "w1", "audio/w1a.flac", "train", "Song one"),
    ("r02", "w1", "audio/w1b.flac", "train", "Song one (live)"),
    ("r03", "w2", "audio/w2a.flac", "train", "Song two"),
    ("r04", "w2", "audio/w2b.flac", "train", "Song two, remix"),  # a comma: quoted cell
    ("r05", "w3", "audio/w3a.flac", "train", "Song three"),
    ("r06", "w3", "audio/w3b.flac", "train", "Song three"),
    ("r07", "w4", "audio/w4a.flac", "test", "Song four"),
    ("r08", "w4", "audio/w4b.flac", "test", "Song four"),
    ("r09", "w5", "audio/w5a.flac", "test", "Song five"),
    ("r10", "w5", "audio/w5b.flac", "test", "Song five"),
    ("r11", "w6", "audio/w6a.flac", "val", "Song six"),
    ("r12", "w6", "audio/w6b.flac", "val", "Song six"),
]


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    """One 16 s tone per valid row (different pitches), plus the broken files."""
    root = tmp_path_factory.mktemp("catalogue")
    audio = root / "audio"
    audio.mkdir()
    for i, (_, _, rel, _, _) in enumerate(VALID):
        sf.write(root / rel, tone(220.0 * 2 ** (i / 12), 16.0, RATE), RATE, subtype="PCM_16")
    sf.write(audio / "short.flac", tone(440.0, 5.0, RATE), RATE, subtype="PCM_16")
    (audio / "garbage.flac").write_bytes(np.random.default_rng(0).bytes(20000))
    whole = (root / VALID[0][2]).read_bytes()
    (audio / "truncated.flac").write_bytes(whole[: len(whole) // 2])  # header intact
    return root


def write_manifest(root: Path, rows, header=HEADER, name="manifest.csv") -> Path:
    """Write ``rows`` to a manifest beside the catalogue's audio folder."""
    path = root / name
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def run(path: Path):
    return validate_manifest(path, SPLITS, "train", TEST_SETS, MIN_S,
                             path.parent / f"report_{path.stem}",
                             progress=False)


def line_of(recording_id: str, rows) -> int:
    """The CSV line of a row: header is line 1, so row i (0-based) is line i + 2."""
    return [r[0] for r in rows].index(recording_id) + 2


def assert_rejected(result, rows, bad: dict[str, str], check: str):
    """``bad``: recording_id → a phrase its message must hold."""
    assert not result.ok
    # nothing dropped: every row of the file, in order, is in the returned table
    assert list(result.manifest["recording_id"]) == [r[0] for r in rows]
    assert set(COMPUTED_COLUMNS) <= set(result.manifest.columns)
    with pytest.raises(ManifestValidationError) as info:
        raise_for_failures(result)
    message = str(info.value)
    report = json.loads(result.report_json.read_text())
    assert report["ok"] is False and report["rows"] == len(rows)
    failed = {e["name"]: e for e in report["expectations"]}[check]
    assert failed["success"] is False
    listed = {(f["recording_id"], f["csv_line"]) for f in failed["failures"]}
    assert listed == {(rid, line_of(rid, rows)) for rid in bad}
    for rid, phrase in bad.items():
        line = line_of(rid, rows)
        assert f"line {line}, recording_id {rid!r}: " in message
        named = [ln for ln in message.splitlines() if f"recording_id {rid!r}" in ln]
        assert any(phrase in ln and "Fix: " in ln for ln in named), (phrase, named)
        assert any(f["fix"] for f in failed["failures"] if f["recording_id"] == rid)
    md = result.report_md.read_text()
    assert "**FAIL**" in md and all(f"| {line_of(rid, rows)} | {rid} |" in md for rid in bad)
    # the other checks still passed: only the planted problem is reported
    assert {f.check for f in result.failures} == {check}
    return report


def test_valid_manifest_passes_and_writes_both_reports(audio_dir):
    rows = VALID
    path = write_manifest(audio_dir, rows, name="valid.csv")
    result = run(path)
    assert result.ok, [f.describe() for f in result.failures]
    assert result.failures == []
    raise_for_failures(result)  # no exception
    df = result.manifest
    assert list(df["recording_id"]) == [r[0] for r in rows]
    assert list(df["csv_line"]) == list(range(2, len(rows) + 2))
    assert np.allclose(df["measured_duration_s"], 16.0)
    assert df["decodes"].tolist() == [True] * len(rows)
    assert df.loc[df["split"] == "train", "train_versions"].tolist() == [2.0] * 6
    assert df.loc[df["split"] != "train", "work_in_train"].tolist() == [False] * 6
    assert df.loc[df["split"] == "val", "work_in_test"].tolist() == [False] * 2
    assert df.loc[3, "title"] == "Song two, remix"
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in df["audio_file"])

    report = json.loads(result.report_json.read_text())
    assert report["ok"] is True and report["rows"] == 12 and report["problems"] == 0
    assert report["per_split"]["train"] == {"recordings": 6, "works": 3, "hours": round(96 / 3600, 3)}
    assert report["per_split"]["test"]["works"] == 2
    names = {e["name"] for e in report["expectations"]}
    assert {"recording_id_unique", "audio_file_unique", "file_exists", "file_decodes", "duration_at_least_min",
            "train_works_have_2_versions", "no_train_work_held_out", "no_val_work_in_test",
            "split_known", "column_split_present"} <= names
    assert all(e["success"] is True for e in report["expectations"])
    assert {e["expectation"] for e in report["expectations"]} >= {
        "expect_column_values_to_be_unique", "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_between", "expect_column_to_exist"}
    md = result.report_md.read_text()
    assert "**PASS**" in md and "| train | 6 | 3 |" in md and "| test | 4 | 2 |" in md


def test_duplicate_recording_id_names_both_rows(audio_dir):
    rows = [*VALID[:5], ("r01", "w3", "audio/w3b.flac", "train", "dup"), *VALID[6:]]
    result = run(write_manifest(audio_dir, rows, name="dup.csv"))
    # both rows carrying the id are named, each pointing at the other line
    assert not result.ok
    dup = [f for f in result.failures if f.check == "recording_id_unique"]
    assert sorted(f.csv_line for f in dup) == [2, 7]
    assert "also used on line(s) 7" in dup[0].problem and "line(s) 2" in dup[1].problem
    with pytest.raises(ManifestValidationError, match=r"line 7, recording_id 'r01': recording_id"):
        raise_for_failures(result)
    report = json.loads(result.report_json.read_text())
    failed = {e["name"]: e for e in report["expectations"]}["recording_id_unique"]
    assert [f["csv_line"] for f in failed["failures"]] == [2, 7]
    assert len(result.manifest) == len(rows)


def test_missing_file(audio_dir):
    rows = [*VALID]
    rows[2] = ("r03", "w2", "audio/nowhere.flac", "train", "Song two")
    result = run(write_manifest(audio_dir, rows, name="missing.csv"))
    report = assert_rejected(result, rows, {"r03": "no audio file at"}, "file_exists")
    failure = report["expectations"][[e["name"] for e in report["expectations"]].index(
        "file_exists")]["failures"][0]
    assert failure["value"] == "audio/nowhere.flac" and failure["column"] == "audio_path"


@pytest.mark.parametrize("bad_file,phrase", [("garbage.flac", "cannot decode audio"),
                                             ("truncated.flac", "truncated or corrupt")])
def test_undecodable_file(audio_dir, bad_file, phrase):
    rows = [*VALID]
    rows[7] = ("r08", "w4", f"audio/{bad_file}", "test", "Song four")
    result = run(write_manifest(audio_dir, rows, name=f"undecodable_{bad_file[:5]}.csv"))
    assert_rejected(result, rows, {"r08": phrase}, "file_decodes")
    assert result.manifest.loc[7, "decodes"] is False
    assert np.isnan(result.manifest.loc[7, "measured_duration_s"])


def test_truncated_flac_keeps_a_valid_header(audio_dir):
    """The truncated file's header still claims 16 s: only a full decode notices."""
    path = audio_dir / "audio" / "truncated.flac"
    assert sf.info(str(path)).duration == pytest.approx(16.0)
    with pytest.raises(AudioDecodeError, match="truncated.flac: .*truncated or corrupt"):
        probe_audio(path)
    facts = probe_audio(audio_dir / VALID[0][2])
    assert facts.duration_s == pytest.approx(16.0)
    # an amplitude-0.5 sine: peak 20·log10(0.5) = -6.02 dBFS, RMS 3.01 dB under it
    assert (facts.peak_dbfs, facts.rms_dbfs) == (pytest.approx(-6.02, abs=0.01),
                                                 pytest.approx(-9.03, abs=0.01))


def music(seconds: float) -> np.ndarray:
    """A signal codecs cannot shrink to nothing: a chord with a little noise."""
    rng = np.random.default_rng(1)
    x = sum(tone(f, seconds, RATE, 0.15) for f in (220.0, 277.2, 329.6))
    return (x + 0.02 * rng.standard_normal(len(x))).astype(np.float32)


@pytest.mark.parametrize("ext,fmt,subtype", [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"),
                                             ("ogg", "OGG", "VORBIS"),
                                             ("mp3", "MP3", "MPEG_LAYER_III")])
def test_a_file_cut_in_half_is_refused_in_every_container(tmp_path, ext, fmt, subtype):
    """libsndfile decodes the first half of a cut WAV, Ogg or MP3 without complaint; the
    container's own record of its length (data chunk size, end-of-stream page, LAME frame
    count, STREAMINFO) gives the cut away."""
    whole = tmp_path / f"whole.{ext}"
    sf.write(whole, music(12.0), RATE, format=fmt, subtype=subtype)
    assert probe_audio(whole).duration_s == pytest.approx(12.0, abs=0.06)
    cut = tmp_path / f"cut.{ext}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioDecodeError, match=f"cut.{ext}: .*the file is truncated or corrupt"):
        probe_audio(cut)


def test_a_streaming_wav_with_an_unknown_size_is_accepted(tmp_path):
    """Streaming writers leave 0xFFFFFFFF as the data size: no trace, so no verdict."""
    path = tmp_path / "stream.wav"
    sf.write(path, music(3.0), RATE, subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    at = raw.index(b"data") + 4
    raw[at:at + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(raw))
    assert probe_audio(path).duration_s == pytest.approx(3.0)


def test_silent_and_near_silent_recordings_are_refused(audio_dir):
    """Digital silence and a -70 dBFS hum are refused with the floor's key; a quiet
    -50 dBFS recording (RMS) passes."""
    audio = audio_dir / "audio"
    sf.write(audio / "silence.flac", np.zeros(16 * RATE, np.float32), RATE, subtype="PCM_16")
    sf.write(audio / "hum.flac", tone(440.0, 16.0, RATE, 10 ** (-67 / 20)), RATE, subtype="PCM_24")
    sf.write(audio / "quiet.flac", tone(440.0, 16.0, RATE, 10 ** (-47 / 20)), RATE, subtype="PCM_24")
    rows = [*VALID]
    rows[3] = ("r04", "w2", "audio/silence.flac", "train", "Song two, remix")
    rows[8] = ("r09", "w5", "audio/hum.flac", "test", "Song five")
    rows[9] = ("r10", "w5", "audio/quiet.flac", "test", "Song five")
    result = run(write_manifest(audio_dir, rows, name="silent.csv"))
    assert_rejected(result, rows, {"r04": "the audio is silent: its RMS level is digital silence",
                                   "r09": "its RMS level is -70.0 dBFS, under the -60 dBFS floor "
                                          "(data.min_rms_dbfs)"}, "audio_not_silent")
    assert result.manifest.loc[9, "rms_dbfs"] == pytest.approx(-50.0, abs=0.05)


def test_single_version_training_work(audio_dir):
    rows = [r for r in VALID if r[0] != "r06"]  # w3 keeps one version in train
    result = run(write_manifest(audio_dir, rows, name="single.csv"))
    assert_rejected(result, rows, {"r05": "has 1 version(s) in train"},
                    "train_works_have_2_versions")


def test_work_leaking_into_test(audio_dir):
    rows = [*VALID]
    rows[8] = ("r09", "w1", "audio/w5a.flac", "test", "Song one, cover")
    result = run(write_manifest(audio_dir, rows, name="leak.csv"))
    assert_rejected(result, rows, {"r09": "is in test and also in train (line(s) 2, 3)"},
                    "no_train_work_held_out")


def test_work_in_val_and_test(audio_dir):
    rows = [*VALID]
    rows[11] = ("r12", "w5", "audio/w6b.flac", "val", "Song five")
    result = run(write_manifest(audio_dir, rows, name="valtest.csv"))
    assert_rejected(result, rows, {"r12": "is in val and also in a test set (line(s) 10, 11)"},
                    "no_val_work_in_test")


def test_unknown_split_name(audio_dir):
    rows = [*VALID]
    rows[9] = ("r10", "w5", "audio/w5b.flac", "tets", "Song five")
    result = run(write_manifest(audio_dir, rows, name="split.csv"))
    assert_rejected(result, rows, {"r10": "unknown split 'tets'"}, "split_known")


def test_too_short_file(audio_dir):
    rows = [*VALID]
    rows[4] = ("r05", "w3", "audio/short.flac", "train", "Song three")
    result = run(write_manifest(audio_dir, rows, name="short.csv"))
    assert_rejected(result, rows, {"r05": "lasts 5.00 s, shorter than the 15 s minimum (train.chunk_s)"},
                    "duration_at_least_min")
    assert result.manifest.loc[4, "measured_duration_s"] == pytest.approx(5.0)


def test_missing_required_column(audio_dir):
    header = [c for c in HEADER if c != "work_id"]
    rows = [(r[0], r[2], r[3], r[4]) for r in VALID]
    path = write_manifest(audio_dir, rows, header=header, name="nocol.csv")
    with pytest.raises(ManifestError, match=r"nocol.csv, line 1: missing required column\(s\) work_id"):
        read_manifest(path)
    result = run(path)
    assert not result.ok and len(result.manifest) == len(rows)
    assert [(f.check, f.csv_line) for f in result.failures] == [("column_work_id_present", 1)]
    with pytest.raises(ManifestValidationError, match="line 1, header: required column 'work_id'"):
        raise_for_failures(result)
    report = {e["name"]: e for e in json.loads(result.report_json.read_text())["expectations"]}
    assert report["column_work_id_present"]["success"] is False
    assert report["column_work_id_present"]["failures"][0]["value"] == "work_id"
    # the checks that need work_id are reported as skipped, the others still ran
    assert report["train_works_have_2_versions"]["success"] is None
    assert "work_id" in report["train_works_have_2_versions"]["skipped"]
    assert report["file_decodes"]["success"] is True


def test_several_problems_are_all_named(audio_dir):
    rows = [*VALID]
    rows[0] = ("r01", "w1", "audio/garbage.flac", "train", "")
    rows[6] = ("r07", "w4", "", "test", "")           # empty audio_path
    rows[10] = ("", "w6", "audio/w6a.flac", "val", "")  # empty recording_id
    result = run(write_manifest(audio_dir, rows, name="several.csv"))
    got = {(f.csv_line, f.check) for f in result.failures}
    assert got == {(2, "file_decodes"), (8, "audio_path_not_empty"),
                   (12, "recording_id_not_empty")}
    with pytest.raises(ManifestValidationError) as info:
        raise_for_failures(result)
    assert "line 12, recording_id (empty): the recording_id cell is empty" in str(info.value)
    assert len(result.manifest) == len(rows)


def test_same_audio_file_listed_twice(audio_dir):
    rows = [*VALID]
    rows[9] = ("r10", "w5", "./audio/../audio/w1a.flac", "test", "Song five")  # = line 2's file
    result = run(write_manifest(audio_dir, rows, name="samefile.csv"))
    assert sorted((f.csv_line, f.check) for f in result.failures) == [
        (2, "audio_file_unique"), (11, "audio_file_unique")]
    assert "also listed on line(s) 2" in result.failures[1].problem
    assert len(result.manifest) == len(rows)


def test_header_only_manifest_fails(audio_dir):
    result = run(write_manifest(audio_dir, [], name="empty.csv"))
    assert not result.ok and len(result.manifest) == 0
    assert [(f.check, f.csv_line) for f in result.failures] == [("has_recordings", 1)]
    with pytest.raises(ManifestValidationError, match="header but no recordings"):
        raise_for_failures(result)


def test_read_manifest_lines_paths_and_extra_columns(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("recording_id,work_id,audio_path,split,duration_s,label\n"
                    "007,w1,a.flac,train,16.5,x\n\n"
                    f"008,w1,{tmp_path / 'b.flac'},train,,\n")
    df = read_manifest(path)
    assert df["recording_id"].tolist() == ["007", "008"]   # ids stay strings
    assert df["csv_line"].tolist() == [2, 4]                # a blank line is counted
    assert df["audio_file"].tolist() == [str(tmp_path / "a.flac"), str(tmp_path / "b.flac")]
    assert df["duration_s"].iloc[0] == 16.5 and np.isnan(df["duration_s"].iloc[1])
    assert df["label"].tolist() == ["x", None]
    assert recordings_in(df, "train").index.tolist() == [0, 1]
    bad = tmp_path / "bad.csv"
    bad.write_text("recording_id,work_id,audio_path,split\nr1,w1,a.flac,train,extra\n")
    with pytest.raises(ManifestError, match="bad.csv, line 2: 5 cells but the header has 4"):
        read_manifest(bad)


def test_importing_validation_does_not_import_great_expectations():
    code = ("import sys, coverhunter.catalogue.validation, coverhunter.catalogue.manifest; "
            "assert 'great_expectations' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
