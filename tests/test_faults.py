"""The fault matrix: bad input, damaged files and killed processes, each through the real
entry points of a tiny project (its own copy of the repository after a full `dvc repro`),
each with the exact outcome: one error line naming the file, line or key and the fix
(no traceback), or outputs identical to an uninterrupted run."""
from __future__ import annotations

import ast
import json
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml
from mlflow.tracking import MlflowClient
from tiny_project import BIN, dvc, env, make_copy, stages_run

pytestmark = pytest.mark.slow
EXTRA = {"features": {"batch_seconds": 60}}   # several extract batches, so a kill lands mid-way


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    repo = make_copy(tmp_path_factory.mktemp("faults"), EXTRA)
    dvc(repo, "repro")
    return repo


def cli(repo: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "coverhunter"), *args], cwd=cwd or repo, env=env(), text=True,
                          capture_output=True, timeout=600)


def one_error(out: subprocess.CompletedProcess, command: str, *phrases: str) -> str:
    """Exit 1 with one `coverhunter <command>: ...` message holding ``phrases``, no traceback."""
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    message = out.stderr[out.stderr.index(f"coverhunter {command}: "):]
    for phrase in phrases:
        assert phrase in message, (phrase, message)
    return message


def write_manifest(repo: Path, name: str, rows: list[tuple[str, str, str, str]]) -> Path:
    path = repo / "data" / name
    pd.DataFrame(rows, columns=["recording_id", "work_id", "audio_path", "split"]).to_csv(path, index=False)
    return path


def demo_rows(repo: Path) -> pd.DataFrame:
    return pd.read_csv(repo / "data" / "demo" / "manifest.csv")


# ------------------------------------------------------------------ bad audio, named by line

def test_cut_silent_and_short_audio_are_refused_with_their_lines(project):
    """A WAV, an Ogg and an MP3 cut in half, a silent file and one shorter than
    evaluate.min_duration_s: `score` names each line, the problem and the key."""
    rows = demo_rows(project)
    audio = project / "data" / "faulty"
    audio.mkdir(exist_ok=True)
    signal_, rate = sf.read(project / "data" / "demo" / rows["audio_path"][0], dtype="float32")
    for ext, fmt, subtype in (("wav", "WAV", "PCM_16"), ("ogg", "OGG", "VORBIS"),
                              ("mp3", "MP3", "MPEG_LAYER_III")):
        whole = audio / f"whole.{ext}"
        sf.write(whole, signal_, rate, format=fmt, subtype=subtype)
        data = whole.read_bytes()
        (audio / f"cut.{ext}").write_bytes(data[: len(data) // 2])
    sf.write(audio / "silent.flac", np.zeros(10 * rate, np.float32), rate)
    sf.write(audio / "short.flac", signal_[: rate // 2], rate)
    good = [(f"g{i}", "wg", f"demo/{rows['audio_path'][i]}", "test") for i in (0, 1)]
    bad = [("cut-wav", "w1", "faulty/cut.wav", "test"), ("cut-ogg", "w1", "faulty/cut.ogg", "test"),
           ("cut-mp3", "w2", "faulty/cut.mp3", "test"), ("silent", "w2", "faulty/silent.flac", "test"),
           ("short", "w2", "faulty/short.flac", "test")]
    manifest = write_manifest(project, "faulty.csv", good + bad)
    out = cli(project, "score", "--manifest", str(manifest), "--model", "artifacts/models/fine/model.pt",
              "--out", "reports/faulty")
    message = one_error(out, "score")
    expected = {4: "cut.wav: its data chunk declares", 5: "cut.ogg: the Ogg stream has no complete "
                "end-of-stream page", 6: "cut.mp3: ", 7: "the audio is silent: its RMS level is "
                "digital silence, under the -60 dBFS floor (data.min_rms_dbfs)",
                8: "the audio lasts 0.50 s, shorter than the 1 s minimum (evaluate.min_duration_s)"}
    for line, phrase in expected.items():
        named = [ln for ln in message.splitlines() if ln.strip().startswith(f"line {line},")]
        assert len(named) == 1 and phrase in named[0] and "Fix: " in named[0], (line, named)
        if line <= 6:
            assert "truncated or corrupt" in named[0], named
    assert not any(ln.strip().startswith(("line 2,", "line 3,")) for ln in message.splitlines())


# ------------------------------------------------------------------ damaged files

def test_a_damaged_feature_file_is_named_and_repaired_by_dvc_repro(project):
    index = pd.read_parquet(project / "artifacts" / "features" / "index.parquet").set_index("recording_id")
    rows = demo_rows(project)
    rid = rows.loc[rows["split"] == "train", "recording_id"].iloc[1]      # one that align reads
    victim = project / "artifacts" / "features" / index.loc[rid, "feature_file"]
    original = victim.read_bytes()
    victim.write_bytes(original[: len(original) // 2])
    one_error(cli(project, "align"), "align", f"{victim.relative_to(project)} (recording {rid}) "
              "is damaged", "dvc repro extract")
    out = dvc(project, "repro")
    assert stages_run(out.stdout) == {"extract"}, out.stdout        # identical features: nothing after it
    assert victim.read_bytes() == original


@pytest.mark.parametrize("damage", ["flipped", "empty", "half"])
def test_a_damaged_checkpoint_is_named_by_the_command_that_loads_it(project, tmp_path, damage):
    """4 flipped bytes inside one weight (finite values: only the checksum can tell), a
    zero-byte file and a file cut in half: one line naming the file, before any work."""
    source = project / "artifacts" / "models" / "fine" / "model.pt"
    state = torch.load(source, weights_only=True)
    data = bytearray(source.read_bytes())
    if damage == "flipped":
        weight = state["model"]["classifier.weight"].contiguous().numpy().tobytes()
        at = bytes(data).index(weight) + 16
        for i in range(4):
            data[at + 4 * i] ^= 0x01          # the lowest mantissa bit of four floats
    bad = tmp_path / damage / "model.pt"
    bad.parent.mkdir()
    bad.write_bytes(b"" if damage == "empty" else bytes(data[: len(data) // 2]) if damage == "half"
                    else bytes(data))
    out = cli(project, "score", "--manifest", "data/demo/manifest.csv", "--model", str(bad),
              "--out", str(tmp_path / "out"))
    why = ("the weights do not match the checksum saved with them" if damage == "flipped"
           else "cannot read the checkpoint")
    one_error(out, "score", f"{bad}: {why}", "run the stage that writes it again")
    assert not (tmp_path / "out").exists()                       # refused before any work


def test_a_device_that_does_not_exist_fails_training_and_keeps_the_model(project, tmp_path):
    model = project / "artifacts" / "models" / "coarse" / "model.pt"
    before = model.read_bytes()
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["device"] = "cuda:99"
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    one_error(cli(project, "--params", str(bad), "train", "coarse"), "train",
              "device 'cuda:99'", "use auto")
    assert model.read_bytes() == before


# ------------------------------------------------------------------ scoring

def test_score_takes_any_model_path_keeps_other_caches_and_writes_null_for_nan(project):
    """A `..` path to a checkpoint scores (row named by its folder); a manifest with one
    recording writes null metrics with a warning saying why; neither run touches the
    other's cached features."""
    from coverhunter.pipeline.layout import in_folder
    from coverhunter.pipeline.score import features_cache
    dotted = f"../{project.name}/artifacts/models/fine/model.pt"
    out = cli(project, "score", "--manifest", "data/demo/manifest.csv", "--model", dotted,
              "--out", "reports/dotted")
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((project / "reports" / "dotted" / "metrics.json").read_text())["fine"]["test"]["mAP"] > 0
    with in_folder(project):
        cache = features_cache("data/demo/manifest.csv")
    cached = {f.name: f.stat().st_mtime_ns for f in (project / cache).glob("*.npy")}
    assert len(cached) == len(demo_rows(project))

    rows = demo_rows(project)
    lone = write_manifest(project, "lone.csv", [("only", "w1", f"demo/{rows['audio_path'][0]}", "test")])
    out = cli(project, "score", "--manifest", str(lone), "--model", "artifacts/models/fine/model.pt",
              "--out", "reports/lone")
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((project / "reports" / "lone" / "metrics.json").read_text())   # strict JSON
    assert metrics["fine"]["test"]["mAP"] is None and metrics["fine"]["test"]["n_queries"] == 0
    assert "fine.test.mAP" in out.stderr and "written as null" in out.stderr
    assert "had no query with another version of its work in the set" in out.stderr
    assert {f.name: f.stat().st_mtime_ns for f in (project / cache).glob("*.npy")} == cached


# ------------------------------------------------------------------ kill -9 anywhere

STAGES = {   # stage -> (its command, what a killed run's rerun must reproduce, scratch to clear)
    "extract": (["extract"], ["artifacts/features"], []),
    "train_coarse": (["train", "coarse"], ["artifacts/models/coarse", "reports/train/coarse"],
                     ["artifacts/work"]),
    "align": (["align"], ["artifacts/align", "reports/align.json"], []),
    "evaluate": (["evaluate"], ["reports/metrics.json"], []),
    "index": (["index", "build"], ["artifacts/index", "reports/index.json"], []),
}


def fingerprint(repo: Path, paths: list[str]) -> dict:
    """What must be identical after a rerun: file bytes, but tensors for checkpoints and
    loss curves without their wall-clock column; the index build time left out."""
    found = {}
    for rel in paths:
        root = repo / rel
        for f in sorted([root] if root.is_file() else root.rglob("*")):
            if not f.is_file():
                continue
            name = str(f.relative_to(repo))
            if f.suffix == ".pt":
                state = torch.load(f, weights_only=True)
                found[name] = {k: v.numpy().tobytes() for k, v in state["model"].items()}
            elif f.name == "loss.csv":
                found[name] = pd.read_csv(f).drop(columns="elapsed_s").to_csv()
            elif f.suffix == ".png":
                continue                          # matplotlib stamps nothing, but fonts may differ
            elif name == "artifacts/index/index.json":       # the build time aside
                doc = json.loads(f.read_text())
                found[name] = {**doc, "meta": {k: v for k, v in doc["meta"].items() if k != "built"}}
            else:
                found[name] = f.read_bytes()
    return found


@pytest.mark.parametrize("stage", list(STAGES))
def test_kill_9_at_a_random_point_then_a_rerun_gives_the_uninterrupted_outputs(project, stage):
    command, outputs, scratch = STAGES[stage]
    reference = fingerprint(project, outputs)
    assert reference
    for rel in scratch:                       # the killed run starts from nothing
        shutil.rmtree(project / rel, ignore_errors=True)
    if stage == "extract":
        shutil.rmtree(project / "artifacts" / "features")
    t0 = time.perf_counter()
    assert cli(project, *command).returncode == 0     # how long it runs uninterrupted
    took = time.perf_counter() - t0
    uninterrupted = fingerprint(project, outputs)
    if stage != "index":    # the index names the newest registered version, which evaluate's test added
        assert uninterrupted == reference
    kept = {rel: fingerprint(project, [rel]) for rel in outputs}
    for rel in scratch:
        shutil.rmtree(project / rel, ignore_errors=True)
    if stage == "extract":
        shutil.rmtree(project / "artifacts" / "features")
    delay = random.Random(stage).uniform(0.3, 0.9) * took
    proc = subprocess.Popen([str(BIN / "coverhunter"), *command], cwd=project, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, f"{stage} finished within {delay:.1f} s"
    if stage != "extract":                    # a killed run leaves the previous outputs whole
        for rel in ("artifacts/models/coarse", "artifacts/index"):
            if rel in outputs:
                assert fingerprint(project, [rel]) == kept[rel]
    out = cli(project, *command)
    assert out.returncode == 0, out.stderr[-3000:]
    assert fingerprint(project, outputs) == uninterrupted
    store = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(store, store)
    running = client.search_runs([client.get_experiment_by_name("coverhunter").experiment_id],
                                 "attributes.status = 'RUNNING'")
    assert [r.data.tags["stage"] for r in running if "stage" in r.data.tags] == []   # killed: KILLED


# ------------------------------------------------------------------ data-parallel training

def test_train_on_two_processes_follows_one_and_resumes_after_a_kill(project, tmp_path):
    """`coverhunter train coarse --nproc 2` (torchrun, gloo) on the same global batches as one
    process (dropout and the attention mask off: they draw per process): the same loss curve
    to float rounding. kill -9 of the launcher and both workers after a checkpoint, then a
    rerun: the uninterrupted two-process run's loss curve and model, exactly."""
    import os
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["model"].update(dropout=0.0, pool_mask_prob=0.0)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    outputs = ["artifacts/models/coarse", "reports/train/coarse"]
    for rel in outputs:                           # the project's own model, put back at the end
        shutil.copytree(project / rel, tmp_path / "kept" / rel)
    work = project / "artifacts" / "work"
    before = set(work.glob("coarse-*"))

    def train(*extra: str) -> tuple[pd.DataFrame, dict]:
        out = cli(project, "--params", str(path), "train", "coarse", *extra)
        assert out.returncode == 0, out.stderr[-3000:]
        return (pd.read_csv(project / "reports/train/coarse/loss.csv").drop(columns="elapsed_s"),
                fingerprint(project, ["artifacts/models/coarse"]))

    def fresh() -> None:                          # the next run starts from step 0
        for d in set(work.glob("coarse-*")) - before:
            shutil.rmtree(d)

    try:
        one, _ = train()
        fresh()
        two, model_two = train("--nproc", "2")
        cols = ["total", "focal", "center", "triplet"]
        np.testing.assert_allclose(two[cols].to_numpy(), one[cols].to_numpy(), rtol=2e-4)
        assert two["step"].tolist() == list(range(1, 31))

        fresh()
        proc = subprocess.Popen([str(BIN / "coverhunter"), "--params", str(path), "train", "coarse",
                                 "--nproc", "2"], cwd=project, env=env(), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while not any((d / "checkpoint.pt").exists() for d in set(work.glob("coarse-*")) - before):
            assert proc.poll() is None and time.time() < deadline, "no checkpoint was written"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        resumed, model_resumed = train("--nproc", "2")
        pd.testing.assert_frame_equal(resumed, two)
        assert model_resumed == model_two
    finally:
        fresh()
        for rel in outputs:
            shutil.rmtree(project / rel, ignore_errors=True)
            shutil.copytree(tmp_path / "kept" / rel, project / rel)


def test_a_training_run_is_keyed_by_its_features_not_only_its_audio(project, tmp_path):
    """The same params and audio with other feature bytes (features from fixed front-end
    code, say) start a new training run instead of resuming the finished one."""
    from coverhunter.digest import file_sha1
    features, work = project / "artifacts" / "features", project / "artifacts" / "work"
    outputs = ["artifacts/features", "artifacts/models/coarse", "reports/train/coarse"]
    for rel in outputs:                           # the project's own state, put back at the end
        shutil.copytree(project / rel, tmp_path / "kept" / rel)
    before = set(work.glob("coarse-*"))
    assert before
    try:
        out = cli(project, "train", "coarse")     # the same features: the finished run, resumed
        assert out.returncode == 0, out.stderr[-3000:]
        assert set(work.glob("coarse-*")) == before
        index = pd.read_parquet(features / "index.parquet")
        for i, name in enumerate(index["feature_file"]):      # every frame 0.5 dB quieter
            path = features / name
            np.save(path, np.maximum(np.load(path) - np.float16(0.5), np.float16(-80.0)))
            index.loc[i, ["feature_bytes", "feature_sha1"]] = path.stat().st_size, file_sha1(path)
        index.to_parquet(features / "index.parquet", index=False)
        out = cli(project, "train", "coarse")
        assert out.returncode == 0, out.stderr[-3000:]
        assert len(set(work.glob("coarse-*")) - before) == 1
    finally:
        for d in set(work.glob("coarse-*")) - before:
            shutil.rmtree(d)
        for rel in outputs:
            shutil.rmtree(project / rel, ignore_errors=True)
            shutil.copytree(tmp_path / "kept" / rel, project / rel)


# ------------------------------------------------------------------ extraction on a Dask cluster

def test_the_extract_flow_on_a_dask_cluster_writes_the_stage_features(project):
    """`python -m flows.extract` (Prefect's Dask task runner, a local 2-process cluster, 3
    shards) after the features were deleted: the extract stage's files and index, byte for
    byte; run again, it computes nothing."""
    features = "artifacts/features"
    reference = fingerprint(project, [features])
    shutil.rmtree(project / features)

    def flow() -> dict:
        out = subprocess.run([str(BIN / "python"), "-m", "flows.extract", "--workers", "2", "--shards", "3"],
                             cwd=project, env=env(), text=True, capture_output=True, timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        return ast.literal_eval(out.stdout.strip().splitlines()[-1])   # the flow's summary

    first = flow()
    assert first["shards"] == 3 and first["computed"] == first["recordings"]
    assert fingerprint(project, [features]) == reference
    assert flow()["computed"] == 0
    assert fingerprint(project, [features]) == reference


def test_the_index_flow_embeds_shards_on_a_dask_cluster_and_ranks_as_the_stage(project, tmp_path):
    """`python -m flows.index` (3 embedding shards, a local 2-process Dask cluster): the same
    chunks in the same order, vectors equal to float rounding, and the same rankings,
    threshold and error rates in reports/index.json as the index stage."""
    from coverhunter.retrieval.index import ChunkIndex
    saved = {rel: tmp_path / "kept" / rel for rel in ("artifacts/index", "reports/index.json")}
    for rel, copy in saved.items():
        copy.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (project / rel).is_dir() else shutil.copy2)(project / rel, copy)
    try:
        out = subprocess.run([str(BIN / "python"), "-m", "flows.index", "--workers", "2", "--shards", "3"],
                             cwd=project, env=env(), text=True, capture_output=True, timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        stage, flow = ChunkIndex.load(saved["artifacts/index"]), ChunkIndex.load(project / "artifacts/index")
        pd.testing.assert_frame_equal(flow.tags, stage.tags)
        np.testing.assert_allclose(flow.vectors, stage.vectors, atol=1e-5)
        a = json.loads(saved["reports/index.json"].read_text())
        b = json.loads((project / "reports/index.json").read_text())
        assert b["threshold"] == pytest.approx(a["threshold"], abs=1e-5)
        for name in ("test", "test_variants"):
            for key in ("FAR", "FRR"):
                assert b[name][key] == a[name][key], (name, key)
            for how in ("through_index", "exact"):
                assert b[name][how] == pytest.approx(a[name][how], abs=1e-6), (name, how)
    finally:
        for rel, copy in saved.items():
            if (project / rel).is_dir():
                shutil.rmtree(project / rel)
            (shutil.copytree if copy.is_dir() else shutil.copy2)(copy, project / rel)
