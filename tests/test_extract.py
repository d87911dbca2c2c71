import os

import numpy as np
import pytest
import soundfile as sf
from synth import tone

from coverhunter.features.cqt import CQTFrontEnd, extract_cqt
from coverhunter.features.extract import ExtractionError, extract_catalogue, load_features, read_index


@pytest.fixture()
def catalogue(tmp_path, params):
    sr = params.features.sample_rate
    files = {}
    for i, freq in enumerate([220.0, 330.0, 440.0]):
        path = tmp_path / "audio" / f"r{i}.flac"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, tone(freq, 2.0 + i, sr), sr)
        files[f"rec/{i}"] = path             # ids may hold characters unfit for file names
    return files


def run(files, out, params):
    return extract_catalogue(list(files), list(files.values()), out, params.features, progress=False)


def test_features_match_the_front_end_and_load_back(catalogue, tmp_path, params):
    index = run(catalogue, tmp_path / "feats", params)
    assert sorted(index["recording_id"]) == sorted(catalogue)
    assert index.set_index("recording_id").loc["rec/1", "n_frames"] == 3 * 25 + 1
    loaded = load_features(tmp_path / "feats", ["rec/2"])[0]
    from coverhunter.features.audio import load_audio
    direct = extract_cqt([load_audio(catalogue["rec/2"], 16000)], CQTFrontEnd(params.features))[0]
    np.testing.assert_allclose(np.asarray(loaded, np.float32), direct, atol=0.05)  # float16 on disk
    assert loaded.dtype == np.float16


def test_second_run_recomputes_only_changed_audio(catalogue, tmp_path, params):
    out = tmp_path / "feats"
    run(catalogue, out, params)
    files = {r: out / f for r, f in read_index(out)[["recording_id", "feature_file"]].values}
    stamps = {r: os.stat(f).st_mtime_ns for r, f in files.items()}
    sf.write(catalogue["rec/0"], tone(880.0, 2.0, 16000), 16000)    # change one recording
    run(catalogue, out, params)
    after = {r: os.stat(f).st_mtime_ns for r, f in files.items()}
    assert after["rec/1"] == stamps["rec/1"] and after["rec/2"] == stamps["rec/2"]
    assert after["rec/0"] != stamps["rec/0"]
    peak = np.asarray(load_features(out, ["rec/0"])[0], np.float32)[10:-10].mean(0).argmax()
    assert peak == round(12 * np.log2(880.0 / params.features.fmin))


def test_corrupt_file_is_named_and_finished_features_stay(catalogue, tmp_path, params):
    out = tmp_path / "feats"
    catalogue["rec/1"].write_bytes(b"not audio at all" * 64)
    with pytest.raises(ExtractionError) as err:
        run(catalogue, out, params)
    message = str(err.value)
    assert "recording rec/1" in message and "r1.flac" in message and "remove these rows" in message
    assert sorted(read_index(out)["recording_id"]) == ["rec/0", "rec/2"]
    # fixing the file extracts only it
    sf.write(catalogue["rec/1"], tone(330.0, 3.0, 16000), 16000)
    assert sorted(run(catalogue, out, params)["recording_id"]) == ["rec/0", "rec/1", "rec/2"]


def test_dropped_recordings_leave_the_index(catalogue, tmp_path, params):
    out = tmp_path / "feats"
    run(catalogue, out, params)
    del catalogue["rec/2"]
    index = run(catalogue, out, params)
    assert sorted(index["recording_id"]) == ["rec/0", "rec/1"]
    assert len(list(out.glob("*.npy"))) == 2


def test_missing_features_are_reported(tmp_path):
    with pytest.raises(KeyError, match="run the extract stage"):
        load_features(tmp_path, ["nope"])
