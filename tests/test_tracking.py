"""MLflow run tree, step metrics, pyfunc model and champion/challenger promotion, against a
real sqlite store (one per module: MLflow's first migration takes a few seconds)."""
from __future__ import annotations

import math

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from coverhunter.mlops import promotion, registry, tracking
from coverhunter.model import CoverHunterNet

PARAMS = {"train": {"lr": 0.001, "max_steps": 25}, "model": {"d_model": 32, "pooling": "attentive"}}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlstore")
    with pytest.MonkeyPatch.context() as mp:   # restores the environment MLflow writes to
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", tracking.PIPELINE_ENV):
            mp.delenv(name, raising=False)
        experiment_id = tracking.configure(root)
        yield root, experiment_id
        mlflow.end_run()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        tracking._state.update(experiment_id=None, uri=None, exported=None)


@pytest.fixture(scope="module")
def net_and_checkpoint(tiny, tmp_path_factory):
    torch.manual_seed(0)
    net = CoverHunterNet(tiny.features.n_bins, tiny.model, n_classes=5).eval()
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    # the trainer's checkpoint also holds optimiser and RNG state; the model log drops it
    torch.save({"config": net.config, "model": net.state_dict(), "step": 7}, path)
    return net, path


@pytest.fixture(scope="module")
def model_uri(store, net_and_checkpoint, tiny):
    net, path = net_and_checkpoint
    with tracking.stage_run("train_fine", "model-key", PARAMS):
        return registry.log_model(path, tiny.features.n_bins, tiny.model.embedding_dim)


def _children(parent_id: str) -> list:
    return MlflowClient().search_runs(
        [tracking._experiment_id()], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")


def test_uri_from_env_or_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000")
    assert tracking.tracking_uri(tmp_path) == "http://tracker:5000"


def test_experiment_has_explicit_artifact_location(store):
    root, experiment_id = store
    exp = MlflowClient().get_experiment(experiment_id)
    assert exp.name == "coverhunter"
    assert exp.artifact_location == (root / "mlartifacts").resolve().as_uri()
    assert tracking.configure(root) == experiment_id          # idempotent
    # MLflow exports MLFLOW_TRACKING_URI itself; that must not pin later roots to this store
    assert tracking.tracking_uri(root / "elsewhere").endswith("elsewhere/mlflow.db")


def test_pipeline_key_and_params_hash(monkeypatch):
    monkeypatch.delenv(tracking.PIPELINE_ENV, raising=False)
    reordered = {"model": {"pooling": "attentive", "d_model": 32},
                 "train": {"max_steps": 25, "lr": 0.001}}
    assert tracking.params_hash(PARAMS) == tracking.params_hash(reordered)
    assert tracking.params_hash(PARAMS) != tracking.params_hash({**PARAMS, "train": {"lr": 0.002}})
    key = tracking.pipeline_key(PARAMS)
    assert key == tracking.pipeline_key(reordered) and len(key) == 16
    assert key != tracking.pipeline_key({"train": {"lr": 0.002}})
    monkeypatch.setenv(tracking.PIPELINE_ENV, "nightly-2024-05-01T02:00")
    assert tracking.pipeline_key(PARAMS) == "nightly-2024-05-01T02:00"
    monkeypatch.setenv(tracking.PIPELINE_ENV, "bad'key")
    with pytest.raises(ValueError):
        tracking.pipeline_key(PARAMS)
    assert tracking.flatten_params(PARAMS) == {
        "train.lr": "0.001", "train.max_steps": "25", "model.d_model": "32",
        "model.pooling": "attentive"}


def test_stages_share_one_parent_and_log_params_tags_steps(store, monkeypatch):
    monkeypatch.delenv(tracking.PIPELINE_ENV, raising=False)
    key = tracking.pipeline_key(PARAMS)
    with tracking.stage_run("train_coarse", key, PARAMS, {"note": "coarse"}) as run:
        log = tracking.step_logger(every=10)
        for step in range(1, 26):                         # 25 steps: flushes at 10, 20, exit
            log(step, {"total": 1.0 / step, "focal": 0.5})
        coarse_id = run.info.run_id
    with tracking.stage_run("evaluate", key, {"evaluate": {"chunk_s": 45.0}}) as run:
        mlflow.log_metric("map_test", 0.5)
        eval_id = run.info.run_id
    with tracking.stage_run("other", "another-pipeline", PARAMS):
        pass

    client = MlflowClient()
    parent_id = tracking.parent_run(key)
    assert {r.info.run_id for r in _children(parent_id)} == {coarse_id, eval_id}
    parent = client.get_run(parent_id)
    assert parent.data.tags[tracking.KEY_TAG] == key
    assert parent.info.run_name == f"pipeline {key[:12]}"
    assert tracking.parent_run("another-pipeline") != parent_id

    coarse = client.get_run(coarse_id)
    assert coarse.info.status == "FINISHED" and coarse.info.run_name == "train_coarse"
    assert coarse.data.params == {"train.lr": "0.001", "train.max_steps": "25",
                                  "model.d_model": "32", "model.pooling": "attentive"}
    tags = coarse.data.tags
    assert tags["git_commit"] == tracking.git_commit() and tags["git_commit"]
    assert tags["dvc_params_hash"] == tracking.params_hash(PARAMS)
    assert tags["stage"] == "train_coarse" and tags["note"] == "coarse"
    history = client.get_metric_history(coarse_id, "total")
    assert sorted(m.step for m in history) == list(range(1, 26))
    assert all(math.isclose(m.value, 1.0 / m.step) for m in history)
    assert len(client.get_metric_history(coarse_id, "focal")) == 25


def test_parent_lookup_is_idempotent_and_skips_failed(store):
    client = MlflowClient()
    first = tracking.parent_run("race-key")
    # a second process that lost a creation race leaves a younger duplicate: the oldest wins
    client.create_run(tracking._experiment_id(), run_name="dup",
                      tags={tracking.KEY_TAG: "race-key"})
    assert tracking.parent_run("race-key") == first
    with pytest.raises(RuntimeError), tracking.stage_run("broken", "race-key", {}):
        raise RuntimeError("stage crashed")
    assert tracking.parent_run("race-key") == first      # a failed stage keeps its parent
    failed_child = [r for r in _children(first) if r.info.run_name == "broken"]
    assert [r.info.status for r in failed_child] == ["FAILED"]
    tracking.end_parent_run("race-key", "FAILED")
    assert tracking.parent_run("race-key") != first     # a failed pipeline starts afresh


def test_logged_model_matches_network(store, net_and_checkpoint, model_uri, tiny):
    net, _ = net_and_checkpoint
    info = mlflow.models.get_model_info(model_uri)
    inputs, outputs = info.signature.inputs.inputs[0], info.signature.outputs.inputs[0]
    assert (inputs.type, inputs.shape) == (np.dtype("float32"), (-1, -1, tiny.features.n_bins))
    assert (outputs.type, outputs.shape) == (np.dtype("float32"), (-1, tiny.model.embedding_dim))
    with open(mlflow.pyfunc.get_model_dependencies(model_uri)) as f:
        reqs = f.read().split()
    assert [r.split("==")[0] for r in reqs] == list(registry.REQUIREMENTS)
    assert f"mlflow=={mlflow.__version__}" in reqs

    model = mlflow.pyfunc.load_model(model_uri)
    rng = np.random.default_rng(0)
    x = rng.normal(-40, 10, (3, 150, tiny.features.n_bins)).astype(np.float32)
    got = model.predict(x)
    want = net.embed(torch.from_numpy(x)).numpy()
    assert got.shape == (3, tiny.model.embedding_dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    lengths = [150, 90, 40]
    got = model.predict(x, params={"lengths": lengths})
    want = net.embed(torch.from_numpy(x), torch.tensor(lengths)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_champion_moves_only_on_improvement(store, model_uri, net_and_checkpoint, tiny):
    name = "coverhunter-promo"
    d1 = promotion.register_and_promote(model_uri, "map_test", 0.5, name=name)
    assert (d1.version, d1.alias, d1.previous_champion_version) == ("1", "champion", None)
    d2 = promotion.register_and_promote(model_uri, "map_test", 0.4, name=name)
    assert (d2.alias, d2.previous_champion_version, d2.previous_champion_value) == \
        ("challenger", "1", 0.5)
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
    d3 = promotion.register_and_promote(model_uri, "map_test", 0.6, name=name)
    assert (d3.version, d3.alias, d3.previous_champion_version) == ("3", "champion", "1")
    d4 = promotion.register_and_promote(model_uri, "map_test", 0.62, name=name, margin=0.05)
    assert (d4.alias, d4.previous_champion_value) == ("challenger", 0.6)
    assert str(client.get_model_version_by_alias(name, "champion").version) == "3"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "4"

    tags = client.get_model_version(name, "4").tags
    assert tags["map_test"] == "0.62" and tags["promotion.decision"] == "challenger"
    assert tags["promotion.previous_champion_version"] == "3"
    assert tags["promotion.previous_champion_value"] == "0.6"
    assert "margin 0.05" in tags["promotion.reason"]
    assert client.get_model_version(name, "1").tags["promotion.decision"] == "champion"

    net, _ = net_and_checkpoint
    champion = registry.load_champion(name)
    x = np.zeros((1, 80, tiny.features.n_bins), dtype=np.float32) - 40
    np.testing.assert_allclose(champion.predict(x), net.embed(torch.from_numpy(x)).numpy(),
                               atol=1e-5)


def test_lower_is_better_and_non_finite(store, model_uri):
    name = "coverhunter-mr1"
    assert promotion.register_and_promote(model_uri, "mr1", 12.0, name=name,
                                         higher_is_better=False).alias == "champion"
    assert promotion.register_and_promote(model_uri, "mr1", 9.0, name=name,
                                         higher_is_better=False).alias == "champion"
    assert promotion.register_and_promote(model_uri, "mr1", 9.0, name=name,
                                         higher_is_better=False).alias == "challenger"
    nan = promotion.register_and_promote(model_uri, "mr1", float("nan"), name=name,
                                        higher_is_better=False)
    assert nan.alias == "challenger" and "not finite" in nan.reason
    # a champion registered for another metric is never replaced automatically
    other = promotion.register_and_promote(model_uri, "map_test", 0.9, name=name)
    assert other.alias == "challenger" and other.previous_champion_value is None


def test_a_model_registered_before_the_rooms_still_loads(store, net_and_checkpoint, tiny, monkeypatch):
    """Models logged before the package was organised in folders run the old import in
    their stored code; it must keep loading and predicting."""
    old_code = ("import mlflow\nfrom coverhunter.registry import CoverHunterPyfunc\n\n"
                "mlflow.models.set_model(CoverHunterPyfunc())\n")
    monkeypatch.setattr(registry, "_MODEL_CODE", old_code)
    net, path = net_and_checkpoint
    with tracking.stage_run("train_fine", "old-model-key", PARAMS):
        uri = registry.log_model(path, tiny.features.n_bins, tiny.model.embedding_dim, input_example=False)
    x = np.random.default_rng(1).normal(-40, 10, (2, 80, tiny.features.n_bins)).astype(np.float32)
    got = mlflow.pyfunc.load_model(uri).predict(x)
    np.testing.assert_allclose(got, net.embed(torch.from_numpy(x)).numpy(), atol=1e-5)


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_request(store, model_uri, net_and_checkpoint, tiny, tmp_path):
    """`mlflow models serve` of the logged model (its code bundled, no coverhunter wheel
    needed) answers /invocations with the network's embeddings."""
    import json
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    net, _ = net_and_checkpoint
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(tmp_path / "m")))
    assert (local / "code" / "coverhunter" / "model" / "network.py").is_file()
    assert "coverhunter" not in (local / "requirements.txt").read_text()    # no wheel to find
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = Path(sys.executable).parent   # mlflow starts uvicorn from PATH: the venv first
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking.tracking_uri(store[0]),
               PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    server = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri,
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        x = np.random.default_rng(2).normal(-40, 10, (2, 60, tiny.features.n_bins)).astype(np.float32)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                         data=json.dumps({"inputs": x.tolist()}).encode(),
                                         headers={"Content-Type": "application/json"})
        deadline, answer = time.monotonic() + 240, None
        while answer is None:
            try:
                with urllib.request.urlopen(request, timeout=30) as r:
                    answer = json.loads(r.read())
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read().decode()[-3000:]
                time.sleep(1)
        got = np.asarray(answer["predictions"], dtype=np.float32)
        np.testing.assert_allclose(got, net.embed(torch.from_numpy(x)).numpy(), atol=1e-5)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_registered_version_is_found_by_its_checkpoint_bytes(store, model_uri, net_and_checkpoint):
    from coverhunter.digest import file_sha1
    _, path = net_and_checkpoint
    decision = promotion.register_and_promote(model_uri, "m", 0.5, name="by-bytes")
    assert registry.version_of(file_sha1(path), name="by-bytes") == decision.version == "1"
    assert registry.version_of("0" * 40, name="by-bytes") is None


def test_runs_of_a_killed_process_are_marked_killed_by_the_next_run(store, monkeypatch):
    """`kill -9` ends no MLflow run: the next run of the same stage marks it KILLED.
    A run whose process is alive, and runs of other stages, are left RUNNING."""
    import signal
    import subprocess
    import sys
    root, _ = store
    monkeypatch.delenv(tracking.PIPELINE_ENV, raising=False)
    script = ("import sys, time\nfrom coverhunter.mlops import tracking\n"
              f"tracking.configure({str(root)!r})\n"
              "with tracking.stage_run(sys.argv[1], 'killtest', {}) as run:\n"
              "    print(run.info.run_id, flush=True)\n    time.sleep(300)\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, stage], stdout=subprocess.PIPE, text=True)
             for stage in ("align", "align", "index")]
    ids = [p.stdout.readline().strip() for p in procs]
    client = MlflowClient()
    try:
        for p in (procs[0], procs[2]):            # the first align run and the index run die
            p.send_signal(signal.SIGKILL)
            p.wait()
        assert {client.get_run(i).info.status for i in ids} == {"RUNNING"}
        with tracking.stage_run("align", "killtest", {}) as run:
            mine = run.info.run_id
        status = {i: client.get_run(i).info.status for i in [*ids, mine]}
        assert status == {ids[0]: "KILLED", ids[1]: "RUNNING", ids[2]: "RUNNING", mine: "FINISHED"}
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_a_registered_version_uri_is_told_apart_and_not_registered_again(store, model_uri):
    decision = promotion.register_and_promote(model_uri, "test.mAP", 0.5, name="again")
    uri = registry.version_uri(decision.version, name="again")
    assert registry.registered_version(uri, name="again") == decision.version == "1"
    assert registry.registered_version(model_uri, name="again") is None     # models:/m-...
    assert registry.registered_version("models:/again/champion", name="again") is None
    again = promotion.already_registered("1", "test.mAP", 0.5, name="again")
    assert (again.version, again.alias, again.previous_champion_version) == ("1", "champion", "1")
    assert not again.registered and not again.promoted      # nothing moved: no index rebuild
    assert "v1 is already registered** (champion); nothing changed" in promotion.decision_markdown(again)
    assert len(MlflowClient().search_model_versions("name='again'")) == 1
