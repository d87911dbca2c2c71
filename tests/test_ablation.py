"""The Table II report [III-D]: rows read from `dvc exp show --json`, hand-checked numbers."""
from __future__ import annotations

import pytest

from coverhunter.mlops.ablation import ROWS, experiments, final_model, markdown, table_rows


def _exp(name: str, metrics: dict, timestamp: str = "2026-11-22T04:00:00") -> dict:
    return {"name": name, "revs": [{"name": name, "data": {"timestamp": timestamp,
        "params": {"params.yaml": {"data": {"data": {"val_split": "val"}}}},
        "metrics": {"reports/metrics.json": {"data": metrics}}}}]}


def _scores(m: float, mr1: float, hr1: float, variants: float) -> dict:
    return {"val": {"mAP": 0.9, "MR1": 1.0, "HR1": 1.0},
            "test": {"mAP": m, "MR1": mr1, "HR1": hr1},
            "test_variants": {"mAP": variants, "MR1": 2.0, "HR1": 0.5}}


SHOW = [{"rev": "workspace", "name": None, "data": {}},
        {"rev": "0ld0ld0", "name": None, "experiments": [   # an older run of a row: replaced
            _exp("t2-full", {"coarse": _scores(0.9, 1.0, 1.0, 0.9)}, "2026-11-21T10:00:00")]},
        {"rev": "abcdef0123", "name": "main", "experiments": [
            _exp("t2-resnet", {"untrained": _scores(0.1, 9, 0, 0.1), "coarse": _scores(0.5, 3.0, 0.4, 0.3)}),
            _exp("t2-full", {"coarse": _scores(0.55, 2.5, 0.5, 0.35), "fine": _scores(0.6, 2.0, 0.6, 0.4)}),
            _exp("someone-elses", {"coarse": _scores(0.99, 1.0, 1.0, 0.9)})]}]


def test_table_rows_use_the_final_model_and_the_baseline_difference():
    entries = table_rows(ROWS, experiments(SHOW), "test")
    assert [e["method"] for e in entries] == ["ResNet-IBN 50 (baseline)", "CoverHunter (full)"]
    base, full = entries
    assert (base["model"], full["model"]) == ("coarse", "fine")      # fine when trained
    assert base["mAP"] == 0.5 and base["diff"] == 0.0
    assert full["mAP"] == 0.6 and full["diff"] == pytest.approx(0.2)  # (0.6 - 0.5) / 0.5
    assert (full["MR1"], full["HR1"], full["mAP test_variants"]) == (2.0, 0.6, 0.4)
    assert "mAP val" not in full                                      # val is not a test set
    md = markdown(entries, "test")
    assert full["commit"] == "abcdef0"                               # the newest run
    assert "| CoverHunter (full) | 0.600 | +20.0% | 2.000 | 0.600 | 0.400 | fine | t2-full | abcdef0 |" in md
    assert md.splitlines()[2].split(" | ")[2] == "-"                  # the baseline's diff


def test_rows_follow_table_ii_and_set_every_switch():
    assert len(ROWS) == 8 and ROWS[0].method.startswith("ResNet-IBN 50")
    keys = {"model.backbone", "model.pooling", "train.tricks", "fine.enabled", "train.init"}
    assert all(set(r.switches) == keys for r in ROWS)
    assert ROWS[1].overrides() == ["model.backbone=resnet_ibn", "model.pooling=mean",
                                   "train.tricks=false", "fine.enabled=false", "train.init=scratch"]
    assert final_model({"coarse": {}}) == "coarse"
