"""End to end on the tiny demo catalogue, in temporary copies of the repository: real
`dvc repro` (twice: the second is a no-op), changed parameters re-running only the stages
that read them, the coarse-to-fine switch, and the Prefect flow in-process."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from tiny_project import ALL_STAGES, BIN, REFERENCES, dvc, env, make_copy, set_param, stages_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    repo = make_copy(tmp_path_factory.mktemp("tiny-dvc"))
    first = dvc(repo, "repro")
    return repo, first


def test_repro_runs_every_stage_and_writes_metrics(repro):
    repo, first = repro
    assert stages_run(first.stdout) == ALL_STAGES
    metrics = yaml.safe_load((repo / "reports" / "metrics.json").read_text())
    assert set(metrics) == REFERENCES | {"coarse", "fine"}
    for model in metrics:                   # every row on every set, the training works too
        assert {"test", "test_variants", "train_works"} <= set(metrics[model]) == set(metrics["fine"])
        for test_set in metrics[model]:
            assert {"mAP", "MR1", "HR1", "P10"} <= set(metrics[model][test_set])
            assert metrics[model][test_set]["n_queries"] == metrics["fine"][test_set]["n_queries"] > 0
    import pandas as pd
    manifest = pd.read_csv(repo / "data" / "demo" / "manifest.csv")
    train = manifest[manifest["split"] == "train"]       # train_works: 24 > the tiny train works
    assert (metrics["fine"]["train_works"]["n_recordings"], metrics["fine"]["train_works"]["n_works"]) \
        == (len(train), train["work_id"].nunique())
    assert (repo / "reports" / "plots" / "metrics.png").stat().st_size > 0
    assert (repo / "reports" / "validation.md").exists()
    assert (repo / "reports" / "train" / "fine" / "loss.csv").exists()


def test_align_stage_writes_tables_and_picture(repro):
    import pandas as pd
    repo, _ = repro
    alignments = pd.read_parquet(repo / "artifacts" / "align" / "alignments.parquet")
    pairs = pd.read_parquet(repo / "artifacts" / "align" / "pairs.parquet")
    assert list(alignments.columns) == ["work_id", "rec_a", "rec_b", "chunk_a", "chunk_b",
                                        "start_a_s", "start_b_s", "similarity", "delta"]
    manifest = pd.read_csv(repo / "data" / "demo" / "manifest.csv")
    train = manifest[manifest["split"] == "train"].groupby("work_id").size()
    assert len(pairs) == int((train * (train - 1) // 2).sum())     # every pair of versions
    assert (alignments["chunk_b"] - alignments["chunk_a"] == alignments["delta"]).all()
    threshold = yaml.safe_load((repo / "params.yaml").read_text())["align"]["threshold"]
    assert (alignments["similarity"] > threshold).all()
    summary = yaml.safe_load((repo / "reports" / "align.json").read_text())
    assert summary["aligned_chunk_pairs"] == len(alignments) > 0
    assert (repo / "artifacts" / "align" / "alignment.png").stat().st_size > 0


def test_registry_has_a_champion(repro):
    repo, _ = repro
    from mlflow import MlflowClient
    store = f"sqlite:///{repo / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    champion = client.get_model_version_by_alias("coverhunter", "champion")
    assert str(champion.version) == "1"
    assert len(client.search_model_versions("name='coverhunter'")) == 1   # no reference row


def test_second_repro_is_a_noop(repro):
    repo, _ = repro
    second = dvc(repo, "repro")
    assert stages_run(second.stdout) == set(), second.stdout


def test_score_reproduces_evaluate_on_the_same_manifest(repro):
    """Scoring the registry's champion (the model just evaluated) on the pipeline's own
    manifest must give the evaluate stage's numbers: same model, data and settings."""
    repo, _ = repro
    out = subprocess.run([str(BIN / "python"), "-m", "stages.score", "--manifest",
                          "data/demo/manifest.csv", "--out", "reports/score"],
                         cwd=repo, env=env(), text=True, capture_output=True, timeout=600)
    assert out.returncode == 0, out.stderr
    scored = yaml.safe_load((repo / "reports" / "score" / "metrics.json").read_text())["champion"]
    evaluated = yaml.safe_load((repo / "reports" / "metrics.json").read_text())["fine"]
    assert set(scored) == {"val", "test", "test_variants"} & set(evaluated)
    for name, m in scored.items():
        for key in ("mAP", "MR1", "HR1", "P10", "n_queries"):
            assert m[key] == pytest.approx(evaluated[name][key]), (name, key)
    both = yaml.safe_load((repo / "reports" / "score" / "metrics.json").read_text())
    evaluated_all = yaml.safe_load((repo / "reports" / "metrics.json").read_text())
    for row in REFERENCES:              # same features and the same random weights: the same numbers
        assert set(both[row]) == set(scored)
        for name in scored:
            assert both[row][name]["mAP"] == pytest.approx(evaluated_all[row][name]["mAP"]), (row, name)
    assert "| champion | test |" in out.stdout


def identify(repo: Path, *args: str) -> dict:
    out = subprocess.run([str(BIN / "coverhunter"), "--repo", str(repo), *args], cwd=repo.parent,
                         env=env(), text=True, capture_output=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out


def test_identify_names_the_work_and_where_it_matches_and_the_index_changes_in_place(repro):
    """A test recording identified against the catalogue: its own work first, called a cover,
    matched at the same times in itself. Its work removed from the index: absent from the
    answer. Added back from a manifest: the answer is the same as before."""
    import json

    import pandas as pd
    repo, _ = repro
    summary = json.loads((repo / "reports" / "index.json").read_text())
    assert summary["kind"] == "flat" and summary["n_recordings"] > 0
    assert 0 <= summary["test"]["FAR"] <= 1 and 0 <= summary["test"]["FRR"] <= 1
    fusion = yaml.safe_load((repo / "params.yaml").read_text())["fusion"]      # identify ranks fused,
    assert fusion["fit"] and summary["fusion"]["weight_fitted_on"] == "val"     # at the weight fitted on val
    assert summary["fusion"]["weight"] in np.round(np.arange(0, 1.01, fusion["fit_step"]), 6)
    assert summary["fusion"]["weight"] > 0 and summary["fusion"]["model_mean"] > 0
    assert {"exact", "fused"} <= set(summary["test"])
    manifest = pd.read_csv(repo / "data" / "demo" / "manifest.csv")
    row = manifest[manifest["split"] == "test"].sort_values("recording_id").iloc[0]
    audio = repo / "data" / "demo" / row["audio_path"]
    before = json.loads(identify(repo, "identify", "--json", str(audio)).stdout)[str(audio)]
    top = before[0]
    assert (top["work_id"], top["recording_id"], top["decision"]) == (row["work_id"], row["recording_id"], "cover")
    assert top["score"] == pytest.approx(1.0, abs=1e-4) and top["query_s"] == top["reference_s"]
    table = identify(repo, "identify", str(audio)).stdout
    assert row["work_id"] in table.splitlines()[2] and "cover" in table and " ↔ " in table

    work = manifest[manifest["work_id"] == row["work_id"]]
    identify(repo, "index", "remove", *work["recording_id"])
    without = json.loads(identify(repo, "identify", "--json", str(audio)).stdout)[str(audio)]
    assert row["work_id"] not in {m["work_id"] for m in without}
    sub = work.assign(audio_path=[str((repo / "data" / "demo" / a).resolve()) for a in work["audio_path"]])
    sub.to_csv(repo / "back.csv", index=False)
    identify(repo, "index", "add", str(repo / "back.csv"))
    again = json.loads(identify(repo, "identify", "--json", str(audio)).stdout)[str(audio)]

    def same(m):        # re-embedded in other batches: scores equal to float rounding
        return m["work_id"], m["recording_id"], m["decision"], m["query_s"], m["reference_s"]
    assert [same(m) for m in again] == [same(m) for m in before]
    assert [m["score"] for m in again] == pytest.approx([m["score"] for m in before], abs=1e-5)


def test_changed_fine_parameter_reruns_only_train_fine_and_evaluate(repro):
    repo, _ = repro
    set_param(repo, "fine", "max_steps", 10)
    out = dvc(repo, "repro")
    assert stages_run(out.stdout) == {"train_fine", "evaluate", "index"}, out.stdout


def test_more_steps_continue_the_shorter_run_and_equal_a_fresh_longer_one(repro):
    """Raising only max_steps resumes the 20-step run (not the 10-step one, nor from
    scratch); the model is bit-identical to a 30-step run from the start."""
    import pandas as pd
    import torch
    repo, _ = repro
    set_param(repo, "fine", "max_steps", 30)
    out = dvc(repo, "repro")
    assert "continuing the 20-step run" in out.stdout + out.stderr
    model = repo / "artifacts" / "models" / "fine" / "model.pt"
    continued = torch.load(model, weights_only=True)["model"]
    curve = pd.read_csv(repo / "reports" / "train" / "fine" / "loss.csv").drop(columns="elapsed_s")
    assert curve["step"].tolist() == list(range(1, 31))
    for done in (repo / "artifacts" / "work").glob("fine-*"):
        shutil.rmtree(done)
    dvc(repo, "repro", "-f", "-s", "train_fine")
    fresh = torch.load(model, weights_only=True)["model"]
    assert fresh.keys() == continued.keys()
    assert all(torch.equal(fresh[k], continued[k]) for k in fresh)
    again = pd.read_csv(repo / "reports" / "train" / "fine" / "loss.csv").drop(columns="elapsed_s")
    assert again.equals(curve)


def test_evaluating_the_same_model_again_registers_nothing(repro):
    """A forced re-run of evaluate on an unchanged checkpoint neither logs nor registers it
    again: the registry keeps its versions, and the decision names the existing one."""
    repo, _ = repro
    from mlflow import MlflowClient
    store = f"sqlite:///{repo / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    before = {v.version for v in client.search_model_versions("name='coverhunter'")}
    out = dvc(repo, "repro", "-f", "-s", "evaluate")
    assert {v.version for v in client.search_model_versions("name='coverhunter'")} == before
    newest = max(before, key=int)
    assert f"already registered as version {newest}" in out.stdout + out.stderr


def test_changed_train_parameter_reruns_only_training_and_evaluate(repro):
    repo, _ = repro
    set_param(repo, "train", "lr", 0.0005)
    out = dvc(repo, "repro")
    assert stages_run(out.stdout) == {"train_coarse", "align", "train_fine", "evaluate", "index"}, out.stdout


def test_coarse_to_fine_switch_skips_align_and_fine(repro):
    """`fine.enabled: false` is the paper's "without coarse-to-fine" row: nothing is
    aligned, no fine model is trained, and the coarse model is the one evaluated last."""
    repo, _ = repro
    set_param(repo, "fine", "enabled", False)
    out = dvc(repo, "repro")
    assert stages_run(out.stdout) == {"align", "train_fine", "evaluate", "index"}, out.stdout
    metrics = yaml.safe_load((repo / "reports" / "metrics.json").read_text())
    assert set(metrics) == REFERENCES | {"coarse"}
    assert yaml.safe_load((repo / "reports" / "align.json").read_text())["skipped"] is True
    assert not (repo / "artifacts" / "models" / "fine" / "model.pt").exists()


def test_ablation_rows_are_dvc_experiments_and_a_table(repro):
    """Two Table II rows (conformer, mean vs GeM pooling) as `dvc exp run`s: `dvc exp show`
    lists them, the table holds the mAP each run wrote and their relative difference,
    params.yaml is restored, and the project's champion is left alone (own store)."""
    repo, _ = repro
    params_before = (repo / "params.yaml").read_bytes()
    store = f"sqlite:///{repo / 'mlflow.db'}"
    from mlflow import MlflowClient
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    champion = client.get_model_version_by_alias("coverhunter", "champion").version
    written = {}
    for row in ("t2-conformer", "t2-conformer-gem"):
        out = subprocess.run([str(BIN / "python"), "-m", "coverhunter.mlops.ablation", "run", "--rows", row],
                             cwd=repo, env=env(), text=True, capture_output=True, timeout=900)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        written[row] = yaml.safe_load((repo / "reports" / "metrics.json").read_text())["coarse"]["test"]
    assert (repo / "params.yaml").read_bytes() == params_before
    shown = dvc(repo, "exp", "show", "--no-pager", "--csv").stdout   # no terminal-width cut
    names = {line.split(",")[0] for line in shown.splitlines()[1:]}
    assert {"t2-conformer", "t2-conformer-gem"} <= names, shown[:2000]
    import csv
    rows = list(csv.DictReader((repo / "reports" / "ablation" / "table.csv").open()))
    assert [r["method"] for r in rows] == ["Conformer", "Conformer + GeM pooling"]
    a, b = written["t2-conformer"]["mAP"], written["t2-conformer-gem"]["mAP"]
    assert float(rows[0]["mAP"]) == pytest.approx(a) and float(rows[1]["mAP"]) == pytest.approx(b)
    assert float(rows[1]["diff"]) == pytest.approx((b - a) / a)
    assert float(rows[1]["HR1"]) == pytest.approx(written["t2-conformer-gem"]["HR1"])
    assert client.get_model_version_by_alias("coverhunter", "champion").version == champion
    ablation = f"sqlite:///{repo / 'reports' / 'ablation' / 'mlflow.db'}"
    assert len(MlflowClient(ablation, ablation).search_model_versions("name='coverhunter'")) == 2


def test_prefect_flow_runs_in_process(tmp_path, monkeypatch):
    repo = make_copy(tmp_path / "tiny-flow")
    monkeypatch.chdir(repo)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    from flows.pipeline import pipeline
    state = pipeline(str(repo / "params.yaml"), return_state=True)
    assert state.is_completed()
    result = state.result()
    assert set(result["metrics"]) == REFERENCES | {"coarse", "fine"}
    assert result["metrics"]["coarse"]["test"]["n_queries"] > 0
    assert (repo / "reports" / "metrics.json").exists()

