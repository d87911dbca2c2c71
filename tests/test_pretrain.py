"""Pretraining workspace (coverhunter/mlops/pretrain.py, stages/pretrain.py) and starting a model
from a shipped checkpoint (train.init: pretrained)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from coverhunter.mlops.pretrain import apply_overrides, model_card, prepare_workspace
from coverhunter.model import CoverHunterNet

RAW = {"train": {"max_steps": 800, "init": "pretrained", "pretrained": "models/pretrained"},
       "demo": {"size": "full", "large": {"out_dir": "data/demo_large"}},
       "pretrain": {"workspace": "ws", "overrides": {"train.max_steps": 9000, "train.init": "scratch",
                                                     "train.pretrained": "none",
                                                     "demo.large.out_dir": "data/demo"}}}


def test_overrides_set_dotted_keys_of_any_depth_and_leave_the_input_alone():
    out = apply_overrides(RAW, RAW["pretrain"]["overrides"])
    assert out["train"] == {"max_steps": 9000, "init": "scratch", "pretrained": "none"}
    assert out["demo"] == {"size": "full", "large": {"out_dir": "data/demo"}}
    assert RAW["train"]["max_steps"] == 800 and RAW["demo"]["large"]["out_dir"] == "data/demo_large"


def test_an_override_naming_no_parameter_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"'train.max_step' names no parameter"):
        apply_overrides(RAW, {"train.max_step": 1})
    with pytest.raises(ValueError, match=r"'demo.large.out_dir.x'"):
        apply_overrides(RAW, {"demo.large.out_dir.x": 1})


def test_workspace_params_links_and_unchanged_files_left_alone(tmp_path):
    for name in ("coverhunter", "stages", "flows", "models"):
        (tmp_path / name).mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    ws = prepare_workspace(tmp_path, RAW)
    params = yaml.safe_load((ws / "params.yaml").read_text())
    assert params["train"]["max_steps"] == 9000 and params["pretrain"] == RAW["pretrain"]   # a whole config
    assert (ws / "stages").is_symlink() and (ws / "stages").resolve() == (tmp_path / "stages").resolve()
    assert (ws / "dvc.yaml").read_text() == "stages: {}\n" and not (ws / "dvc.yaml").is_symlink()
    assert (ws / "none").is_dir() and not (ws / "models").exists()   # its own empty train.pretrained
    before = (ws / "params.yaml").stat().st_mtime_ns
    prepare_workspace(tmp_path, RAW)                       # same inputs: not rewritten
    assert (ws / "params.yaml").stat().st_mtime_ns == before
    (tmp_path / "dvc.yaml").write_text("stages: {a: {cmd: x}}\n")
    prepare_workspace(tmp_path, RAW)                       # the project's pipeline changed
    assert "cmd: x" in (ws / "dvc.yaml").read_text()


def test_model_card_lists_every_row_and_set():
    m = {"mAP": 0.5, "HR1": 0.25, "MR1": 3.0, "n_queries": 40}
    card = {"name": "models/pretrained", "commit": "abc1234", "exported": "now",
            "data": {"works": 3000, "recordings": 12000, "hours": 93.0, "works_per_split": {"train": 2700}},
            "steps": 8000, "wall_s": 1800.0, "final_loss": 1.2, "device": "cpu",
            "params": {"model": {}, "loss": {}, "train": {}, "augment": {}},
            "metrics": {"coarse": {"test": m}, "baseline_2dftm": {"test": m}},
            "metrics_source": {"baseline_2dftm": "demo catalogue"}}
    card["data"]["excluded_splits"] = ["val", "test"]
    text = model_card(card)
    assert "| pretraining workspace | coarse | test | 0.500 | 0.250 | 3.00 | 40 |" in text
    assert "| demo catalogue | baseline_2dftm | test | 0.500 | 0.250 | 3.00 | 40 |" in text
    assert "none of the demo's val, test tunes" in text
    assert "3000 works" in text and "30.0 min" in text


def test_start_from_a_checkpoint_of_another_model_names_the_keys(tiny, tmp_path):
    from coverhunter.mlops.pretrain import pretrained_checkpoint
    from coverhunter.model.checkpoint import start_from
    other = CoverHunterNet(96, dataclasses.replace(tiny.model, d_model=48), n_classes=3)
    torch.save({"config": other.config, "model": other.state_dict()}, tmp_path / "model.pt")
    net = CoverHunterNet(96, tiny.model, n_classes=5)
    with pytest.raises(ValueError, match=r"model.d_model=48 \(params.yaml: 32\)"):
        start_from(net, tmp_path / "model.pt")
    same = CoverHunterNet(96, dataclasses.replace(tiny.model, dropout=0.3), n_classes=3)
    torch.save({"config": same.config, "model": same.state_dict()}, tmp_path / "model.pt")
    start_from(net, tmp_path / "model.pt")                 # dropout differs: allowed
    assert torch.equal(net.state_dict()["pool.proj.weight"], same.state_dict()["pool.proj.weight"])
    with pytest.raises(FileNotFoundError, match="make pretrain"):
        pretrained_checkpoint(tmp_path / "none")
    assert pretrained_checkpoint(tmp_path) == tmp_path / "model.pt"


def test_interpolating_towards_a_checkpoint_blends_every_weight_but_the_classifier(tiny, tmp_path):
    """share s: (1 - s)·ours + s·theirs for every float tensor, the classifier and the
    integer BatchNorm counters kept as ours; s = 0 is ours bit for bit, s = 1 theirs; a
    checkpoint of another model is refused naming the key."""
    from coverhunter.model.checkpoint import interpolate_from
    torch.manual_seed(0)
    theirs = CoverHunterNet(96, tiny.model, n_classes=0)
    torch.save({"config": theirs.config, "model": theirs.state_dict()}, tmp_path / "model.pt")
    ours = CoverHunterNet(96, tiny.model, n_classes=4)
    state = {"config": ours.config, "model": ours.state_dict()}
    blended = interpolate_from(state, tmp_path / "model.pt", 0.25)["model"]
    a, b = state["model"]["pool.proj.weight"], theirs.state_dict()["pool.proj.weight"]
    assert not torch.equal(a, b)
    torch.testing.assert_close(blended["pool.proj.weight"], 0.75 * a + 0.25 * b)
    assert torch.equal(blended["classifier.weight"], state["model"]["classifier.weight"])
    counters = [k for k, v in blended.items() if not v.is_floating_point()]
    assert counters and all(torch.equal(blended[k], state["model"][k]) for k in counters)
    for k, v in interpolate_from(state, tmp_path / "model.pt", 0.0)["model"].items():
        assert torch.equal(v, state["model"][k]), k
    torch.testing.assert_close(interpolate_from(state, tmp_path / "model.pt", 1.0)["model"]["pool.proj.weight"], b)
    other = CoverHunterNet(96, dataclasses.replace(tiny.model, d_model=48), n_classes=0)
    torch.save({"config": other.config, "model": other.state_dict()}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"model.d_model=48 \(params.yaml: 32\)"):
        interpolate_from(state, tmp_path / "model.pt", 0.25)


def test_the_blend_applies_only_to_a_fine_model_that_descends_from_the_checkpoint(params):
    """`fine.pretrained_share` needs the chain checkpoint → coarse → fine: with either
    start from scratch, or for the coarse model, the share is 0 (`-S train.init=scratch`
    alone trains from scratch without touching the checkpoint)."""
    from coverhunter.pipeline.train import pretrained_share
    p = dataclasses.replace(params, train=dataclasses.replace(params.train, init="pretrained"),
                            fine=dataclasses.replace(params.fine, init="coarse", pretrained_share=0.2))
    assert pretrained_share(p, "fine") == 0.2 and pretrained_share(p, "coarse") == 0.0
    scratch = dataclasses.replace(p, train=dataclasses.replace(p.train, init="scratch"))
    new_fine = dataclasses.replace(p, fine=dataclasses.replace(p.fine, init="scratch"))
    assert pretrained_share(scratch, "fine") == 0.0 and pretrained_share(new_fine, "fine") == 0.0
