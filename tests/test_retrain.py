"""The scheduled retraining flow (flows/retrain.py) on the tiny demo catalogue, in one
temporary copy of the repository shared by the tests below (module fixture), which run in
file order, each leaving the repository as the next one expects:

first run (every stage, the first champion) → a run with no change (nothing happens) →
the lock (a second run exits, or waits) → recordings added and training raising (the run
fails naming the stage; champion, registry and state untouched) → the same recordings
again (the stages run; the model is the same one, so the champion is kept) → training
recordings added against a champion that cannot rank anything (the new model is promoted).

Plus the deployment: its schedule read back from a Prefect test server, as configured.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import soundfile as sf
import yaml
from conftest import ROOT
from mlflow import MlflowClient
from tiny_project import make_copy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
NAME = "coverhunter"
# The tiny catalogue's `test` split holds a single work (every ranking scores mAP 1), so
# models are compared on `test_variants`: two works of three versions.
MAIN = "test_variants"
# the test's flow settings: one retry without delay (the rest as in params.yaml)
FLOW = {"retries": 1, "retry_delay_s": 0, "lock_wait_s": 0}
STAGES = ["validate", "extract", "train_coarse", "align", "train_fine", "evaluate"]


def set_params(root: Path, section: str, **values) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def add_recording(root: Path, split: str, tag: str) -> str:
    """A new version of an existing work of ``split``: the first recording of that split,
    1 s shorter at -3 dB, under a new id; appended to the manifest."""
    manifest = root / "data" / "demo" / "manifest.csv"
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    src = df[df["split"] == split].sort_values("recording_id").iloc[0]
    audio, sr = sf.read(manifest.parent / src["audio_path"])
    audio = audio[sr:] * 0.7
    new_id = f"{src['recording_id']}-{tag}"
    sf.write(manifest.parent / "audio" / f"{new_id}.flac", audio, sr)
    row = src.copy()
    row["recording_id"], row["audio_path"] = new_id, f"audio/{new_id}.flac"
    row["duration_s"] = f"{len(audio) / sr:.2f}"
    pd.concat([df, row.to_frame().T]).to_csv(manifest, index=False)
    return new_id


def client(root: Path) -> MlflowClient:
    store = f"sqlite:///{root / 'mlflow.db'}"
    return MlflowClient(tracking_uri=store, registry_uri=store)


def versions(root: Path) -> list[str]:
    return sorted(str(v.version) for v in client(root).search_model_versions(f"name='{NAME}'"))


def champion(root: Path) -> str:
    return str(client(root).get_model_version_by_alias(NAME, "champion").version)


def n_runs(root: Path) -> int:
    c = client(root)
    return sum(len(c.search_runs([e.experiment_id], max_results=10000))
               for e in c.search_experiments())


def state_bytes(root: Path) -> bytes:
    return (root / "artifacts" / "retrain" / "state.json").read_bytes()


@pytest.fixture
def no_stage_may_run(monkeypatch):
    """Every stage function raises if called."""
    import importlib

    def forbidden(*args, **kwargs):
        raise AssertionError("a stage ran")
    for module in ("validate", "extract", "train", "align", "evaluate"):
        monkeypatch.setattr(importlib.import_module(f"coverhunter.pipeline.{module}"), "run", forbidden)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A tiny repository with its demo catalogue, after a first retrain run."""
    mp = pytest.MonkeyPatch()
    root = make_copy(tmp_path_factory.mktemp("tiny-retrain"))
    set_params(root, "flow", **FLOW)
    set_params(root, "data", main_test_set=MAIN)
    mp.chdir(root)
    for leaked in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "COVERHUNTER_PIPELINE_RUN"):
        mp.delenv(leaked, raising=False)
    from coverhunter.pipeline import demo
    from flows.retrain import retrain
    demo.run(root / "params.yaml")
    first = retrain(str(root / "params.yaml"))
    yield root, first
    mp.undo()
    for leaked in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):   # exported by mlflow
        mp.delenv(leaked, raising=False)


def run_retrain(root: Path, **kwargs):
    from flows.retrain import retrain
    return retrain(str(root / "params.yaml"), **kwargs)


# ---------------------------------------------------------------- the deployment

def test_deployment_schedule_reads_back_as_the_configured_cron(tmp_path):
    """The served deployment (``--serve``) from a params file with its own schedule, and
    the work-pool deployment (``--deploy POOL``) from the repository's params.yaml."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.testing.utilities import prefect_test_harness

    from flows.retrain import build_deployment, deploy_to_pool
    repo_flow = yaml.safe_load((ROOT / "params.yaml").read_text())["flow"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["flow"].update(cron="15 4 * * 2", timezone="Europe/Berlin", on_overlap="cancel_new")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    with prefect_test_harness(server_startup_timeout=180):
        deployment_id = build_deployment(path).apply()
        with get_client(sync_client=True) as c:
            d = c.read_deployment(deployment_id)
            c.create_work_pool(WorkPoolCreate(name="retrain-pool", type="process"))
        pooled_id = deploy_to_pool("retrain-pool", ROOT / "params.yaml")
        with get_client(sync_client=True) as c:
            pooled = c.read_deployment(pooled_id)
    assert d.name == params["flow"]["deployment"]
    (schedule,) = d.schedules
    assert schedule.schedule.cron == "15 4 * * 2"
    assert schedule.schedule.timezone == "Europe/Berlin"
    assert schedule.active
    assert d.parameters == {"params_path": str(path.resolve())}
    assert d.global_concurrency_limit.limit == 1
    assert d.concurrency_options.collision_strategy.value == "CANCEL_NEW"

    assert (pooled.work_pool_name, pooled.entrypoint) == ("retrain-pool", "flows/retrain.py:retrain")
    (schedule,) = pooled.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == (repo_flow["cron"], repo_flow["timezone"])
    assert pooled.parameters == {"params_path": "params.yaml"}
    assert pooled.concurrency_options.collision_strategy.value == repo_flow["on_overlap"].upper()


# ---------------------------------------------------------------- runs, in order

def test_first_run_runs_every_stage_and_crowns_a_champion(repo):
    root, first = repo
    assert first["status"] == "retrained", first["message"]
    assert [s for s, _ in first["stages"]] == STAGES + ["index"]   # a new champion: the index is rebuilt
    assert first["decision"]["alias"] == "champion"
    assert first["decision"]["reason"] == "no champion yet"
    assert versions(root) == ["1"] and champion(root) == "1"
    state = json.loads(state_bytes(root))
    assert state["registered_version"] == "1" and [s for s, _ in state["stages"]] == STAGES + ["index"]


def test_run_without_changes_does_nothing(repo, no_stage_may_run):
    root, _ = repo
    before = (versions(root), champion(root), n_runs(root), state_bytes(root))
    out = run_retrain(root)
    assert out["status"] == "nothing_to_do", out["message"]
    assert "nothing to do" in out["message"] and "unchanged" in out["message"]
    assert (versions(root), champion(root), n_runs(root), state_bytes(root)) == before


def test_a_params_key_no_stage_reads_does_not_retrain(repo, no_stage_may_run):
    root, _ = repo
    set_params(root, "flow", cron="0 5 * * *")
    try:
        out = run_retrain(root)
    finally:
        set_params(root, "flow", cron=yaml.safe_load((ROOT / "params.yaml").read_text())["flow"]["cron"])
    assert out["status"] == "nothing_to_do"
    assert "unchanged for every stage" in out["message"]


def test_second_run_exits_while_the_lock_is_held(repo, no_stage_may_run):
    from coverhunter.mlops.retrain import repo_lock
    root, _ = repo
    lock = Path("artifacts/retrain/lock")
    add_recording(root, MAIN, "locked")   # a change: only the lock stops this run
    before = (versions(root), champion(root), n_runs(root), state_bytes(root))
    with repo_lock(lock):
        out = run_retrain(root)
    assert out["status"] == "locked"
    assert f"another retrain run holds {lock}" in out["message"]
    assert "pid" in out["message"] and "exiting" in out["message"]
    assert (versions(root), champion(root), n_runs(root), state_bytes(root)) == before


def test_a_run_waits_for_the_lock_within_lock_wait_s(repo, no_stage_may_run):
    from coverhunter.mlops.retrain import repo_lock
    root, _ = repo
    set_params(root, "flow", lock_wait_s=1)
    held = threading.Event()

    def hold(seconds: float) -> None:
        with repo_lock(Path("artifacts/retrain/lock")):
            held.set()
            time.sleep(seconds)
    try:
        holder = threading.Thread(target=hold, args=(3.0,))
        holder.start()
        assert held.wait(timeout=60)
        start = time.monotonic()
        out = run_retrain(root)
        assert out["status"] == "locked" and "(waited 1 s)" in out["message"]
        assert time.monotonic() - start >= 1.0
        holder.join()
        # released within the wait: the run goes on (and here fails on the first stage it runs)
        set_params(root, "flow", lock_wait_s=10)
        held.clear()                  # before the holder starts: it may set it at once
        holder = threading.Thread(target=hold, args=(0.5,))
        holder.start()
        assert held.wait(timeout=60)
        state = run_retrain(root, return_state=True)
        holder.join()
        assert state.is_failed()
        assert "stage 'validate' failed" in str(state.result(raise_on_failure=False))
    finally:
        set_params(root, "flow", lock_wait_s=FLOW["lock_wait_s"])


def test_failing_training_fails_the_run_and_leaves_the_champion(repo, monkeypatch):
    import coverhunter.pipeline.train
    root, _ = repo
    calls = []

    def broken(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(coverhunter.pipeline.train, "run", broken)
    before = (versions(root), champion(root), state_bytes(root))
    state = run_retrain(root, return_state=True)
    assert state.is_failed()
    error = str(state.result(raise_on_failure=False))
    assert "stage 'train_coarse' failed after 2 attempt(s): RuntimeError: disk on fire" in error
    assert len(calls) == 1 + FLOW["retries"]
    assert (versions(root), champion(root), state_bytes(root)) == before

    def bad_input(*args, **kwargs):    # bad params or data: the same input fails the same way
        calls.append(args)
        raise ValueError("train.lr must be positive")
    monkeypatch.setattr(coverhunter.pipeline.train, "run", bad_input)
    calls.clear()
    state = run_retrain(root, return_state=True)
    assert "stage 'train_coarse' failed after 1 attempt(s): ValueError" in \
        str(state.result(raise_on_failure=False))
    assert len(calls) == 1
    assert (versions(root), champion(root), state_bytes(root)) == before


def test_added_test_recordings_retrain_and_keep_an_equal_champion(repo):
    """The recording added above is in a test split: the training data did not change, so
    training resumes to the same model, byte for byte the champion: it is scored on the
    grown test set but not registered or compared again, and the champion stays (no index
    rebuild). validate and extract ran in the failed run above and were recorded then: this
    run starts at train_coarse."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId
    root, _ = repo
    out = run_retrain(root)
    assert out["status"] == "retrained", out["message"]
    assert [s for s, _ in out["stages"]] == STAGES[2:]
    assert "artifacts/validated" in out["stages"][0][1]
    d = out["decision"]
    assert (d["version"], d["alias"], d["registered"]) == ("1", "champion", False)
    manifest = pd.read_csv(root / "data" / "demo" / "manifest.csv")
    n_test = int((manifest["split"] == MAIN).sum())
    assert d["metrics"][MAIN]["n_recordings"] == n_test
    assert "already registered as version 1" in d["reason"]
    assert champion(root) == "1" and versions(root) == ["1"]
    assert "challenge.version" not in client(root).get_model_version(NAME, "1").tags

    with get_client(sync_client=True) as pc:
        (artifact,) = pc.read_artifacts(
            artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[out["artifact_id"]])))
    assert artifact.key == "coverhunter-retrain-decision" and artifact.type == "markdown"
    assert "v1 is already registered** (champion)" in artifact.data
    assert f"| {MAIN} | mAP |" in artifact.data and d["reason"] in artifact.data


def test_added_training_recordings_promote_over_a_worse_champion(repo, tmp_path):
    """The champion is replaced by a model whose embeddings are all equal (it ranks no
    recording above another: the lowest mAP there is), carrying a stale high mAP tag. A
    training recording is added: the model really retrains, is compared with the
    champion as measured now, not as tagged, and takes the alias."""
    from coverhunter.mlops import registry, tracking
    from coverhunter.model.checkpoint import load_checkpoint, save_model
    root, _ = repo
    state = load_checkpoint(root / "artifacts" / "models" / "fine" / "model.pt")
    for key in ("bottleneck.weight", "bottleneck.bias", "bottleneck.linear.weight"):
        if key in state["model"]:   # a linear neck, or the linear part of a BNNeck
            state["model"][key].zero_()
    constant = save_model(state, tmp_path / "constant.pt")
    tracking.configure(root)
    cfg = state["config"]
    uri = registry.log_model(constant, cfg["n_bins"], cfg["model"]["embedding_dim"])
    mv = mlflow.register_model(uri, NAME, tags={f"{MAIN}.mAP": "0.99"})
    client(root).set_registered_model_alias(NAME, "champion", mv.version)
    assert str(mv.version) == "2"

    add_recording(root, "train", "more")
    out = run_retrain(root)
    assert out["status"] == "retrained", out["message"]
    d = out["decision"]
    assert (d["version"], d["alias"], d["previous_champion_version"]) == ("3", "champion", "2"), d
    assert d["previous_champion_value"] < d["value"] - 0.01 < 0.99
    assert "beats champion v2" in d["reason"]
    assert champion(root) == "3"
    old = client(root).get_model_version(NAME, "2").tags
    assert (old["challenge.version"], old["challenge.decision"]) == ("3", "replaced")
    assert client(root).get_model_version(NAME, "3").tags["promotion.decision"] == "champion"


def test_promotion_rule_needs_a_gain_of_at_least_the_margin():
    from coverhunter.mlops.promotion import _decide
    assert _decide(0.75, 0.50, "1", "m", True, 0.25)[0] == "champion"     # gain == margin
    assert _decide(0.74, 0.50, "1", "m", True, 0.25)[0] == "challenger"
    assert _decide(0.50, 0.50, "1", "m", True, 0.0)[0] == "challenger"    # a tie never moves it
    assert _decide(0.50, None, "1", "m", True, 0.0, "could not be measured")[1] == \
        "could not be measured: not replaced automatically"
