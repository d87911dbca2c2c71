import os

import numpy as np
import pytest
import soundfile as sf
from synth import tone

from coverhunter.features.cqt import CQTFrontEnd, extract_cqt
from coverhunter.features.extract import (
    ExtractionError,
    FeatureFileError,
    extract_catalogue,
    load_features,
    read_index,
)


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


def test_a_front_end_code_change_recomputes_everything(catalogue, tmp_path, params, monkeypatch):
    """Features made by other front-end code are stale even with the same parameters (a
    fix to the CQT must not leave old features in place)."""
    from coverhunter.features import extract
    out = tmp_path / "feats"
    run(catalogue, out, params)
    files = {r: out / f for r, f in read_index(out)[["recording_id", "feature_file"]].values}
    stamps = {r: os.stat(f).st_mtime_ns for r, f in files.items()}
    run(catalogue, out, params)
    assert {r: os.stat(f).st_mtime_ns for r, f in files.items()} == stamps
    monkeypatch.setattr(extract, "front_end_digest", lambda: "edited")
    run(catalogue, out, params)
    assert all(os.stat(f).st_mtime_ns != stamps[r] for r, f in files.items())


def test_the_front_end_digest_covers_its_code():
    from pathlib import Path

    from coverhunter.features import extract
    here = Path(extract.__file__).parent
    assert {"cqt.py", "multirate.py", "audio.py"} <= set(extract.FRONT_END_CODE)
    assert all((here / name).is_file() for name in extract.FRONT_END_CODE)


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


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_feature_file_is_named_and_recomputed(catalogue, tmp_path, params, damage, caplog):
    """A cut or edited feature file: the reader names it and the fix; the next extract
    recomputes that file alone (byte-identical to the first) and says which it was."""
    out = tmp_path / "feats"
    run(catalogue, out, params)
    files = {r: out / f for r, f in read_index(out)[["recording_id", "feature_file"]].values}
    original = files["rec/1"].read_bytes()
    stamps = {r: os.stat(f).st_mtime_ns for r, f in files.items()}
    if damage == "truncate":
        files["rec/1"].write_bytes(original[: len(original) // 2])
        with pytest.raises(FeatureFileError, match=r"rec_1-\w+\.npy \(recording rec/1\) is damaged "
                                                   r".*dvc repro extract"):
            load_features(out, ["rec/0", "rec/1"])
    else:   # same size, one value changed: only the hash can tell
        flipped = bytearray(original)
        flipped[-7] ^= 0x40
        files["rec/1"].write_bytes(bytes(flipped))
    with caplog.at_level("WARNING", logger="coverhunter.features.extract"):
        run(catalogue, out, params)
    assert f"{files['rec/1']} (rec/1)" in caplog.text and "recomputing 1 feature file(s)" in caplog.text
    assert files["rec/1"].read_bytes() == original
    assert all(os.stat(files[r]).st_mtime_ns == stamps[r] for r in ("rec/0", "rec/2"))


def test_an_index_without_recorded_hashes_is_checked_and_kept(catalogue, tmp_path, params):
    """Indexes written before sizes and hashes were recorded: intact files are kept (not
    recomputed) and get their size and hash; a file with the wrong frame count is redone."""
    out = tmp_path / "feats"
    run(catalogue, out, params)
    index = read_index(out)
    files = {r: out / f for r, f in index[["recording_id", "feature_file"]].values}
    stamps = {r: os.stat(f).st_mtime_ns for r, f in files.items()}
    index.drop(columns=["feature_bytes", "feature_sha1"]).to_parquet(out / "index.parquet")
    np.save(files["rec/2"], np.zeros((3, 96), np.float16))     # a well-formed but wrong array
    after = run(catalogue, out, params).set_index("recording_id")
    assert os.stat(files["rec/0"]).st_mtime_ns == stamps["rec/0"]
    assert os.stat(files["rec/1"]).st_mtime_ns == stamps["rec/1"]
    assert load_features(out, ["rec/2"])[0].shape == (4 * 25 + 1, 96)
    assert after.loc["rec/0", "feature_sha1"] == index.set_index("recording_id").loc["rec/0", "feature_sha1"]


# ---- sharded extraction (flows/extract.py runs the shards on a Dask cluster) ------------

def test_shards_on_a_dask_cluster_write_the_single_process_bytes(tmp_path, params):
    """12 recordings of different lengths, several CQT batches, 3 shards on a 2-process local
    Dask cluster: the same feature files, byte for byte, and the same index as the
    single-process extraction; a plan made after one finished shard keeps its recordings."""
    import dataclasses

    from distributed import Client, LocalCluster

    from coverhunter.features.extract import extract_shard, merge_shards, plan, shards
    p = dataclasses.replace(params.features, batch_seconds=20)        # ~3 recordings a batch
    rng = np.random.default_rng(4)
    files = {}
    for i in range(12):
        path = tmp_path / "audio" / f"r{i}.flac"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, tone(float(rng.uniform(100, 2000)), float(rng.uniform(2, 8)), p.sample_rate)
                 + 0.01 * rng.standard_normal(1), p.sample_rate)
        files[f"rec-{i}"] = path
    ids, paths = list(files), list(files.values())
    one = tmp_path / "one"
    extract_catalogue(ids, paths, one, p, progress=False)

    many = tmp_path / "many"
    kept, todo = plan(ids, paths, many, p)
    parts = shards(todo, p, 3)
    assert kept == {} and len(parts) == 3 and [t for part in parts for t in part] == todo
    extract_shard(parts[0], many, p, "shard-0000")                   # one shard finished earlier
    kept, todo = plan(ids, paths, many, p)
    assert sorted(kept) == sorted(t.recording_id for t in parts[0])
    assert todo == [t for part in parts[1:] for t in part]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        futures = [client.submit(extract_shard, part, many, p, f"shard-{i + 1:04d}", pure=False)
                   for i, part in enumerate(parts[1:])]
        rows = client.gather(futures)
    index = merge_shards(many, kept, rows)
    assert not (many / "parts").exists()
    assert index.equals(read_index(one))
    for name in index["feature_file"]:
        assert (many / name).read_bytes() == (one / name).read_bytes(), name
