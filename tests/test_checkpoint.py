"""Checkpoint integrity: a digest of every tensor saved with it and checked on load,
non-finite weights refused, and every unreadable file named with the fix."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from coverhunter.model import CoverHunterNet
from coverhunter.model.checkpoint import (
    DIGEST,
    CheckpointError,
    load_checkpoint,
    load_model,
    save_model,
    tensors_digest,
)


@pytest.fixture()
def saved(tiny, tmp_path):
    torch.manual_seed(0)
    net = CoverHunterNet(tiny.features.n_bins, dataclasses.replace(tiny.model), 5)
    path = save_model({"config": net.config, "model": net.state_dict()}, tmp_path / "model.pt")
    return net, path


def weight_offset(path, tensor: torch.Tensor) -> int:
    """Where a tensor's bytes sit in the (uncompressed) zip the checkpoint is."""
    return path.read_bytes().index(tensor.detach().contiguous().numpy().tobytes())


def test_round_trip_keeps_weights_and_records_their_digest(saved):
    net, path = saved
    state = load_checkpoint(path)
    assert state[DIGEST] == tensors_digest({"model": net.state_dict()}) == tensors_digest(state)
    again = load_model(path)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))


def test_a_flipped_byte_that_leaves_a_finite_weight_is_caught(saved):
    """Flipping the lowest mantissa bit of one float changes it by ~1e-7: still finite,
    still a plausible weight; only the digest can tell."""
    net, path = saved
    weight = net.state_dict()["classifier.weight"]
    raw = bytearray(path.read_bytes())
    raw[weight_offset(path, weight)] ^= 0x01
    path.write_bytes(bytes(raw))
    tampered = torch.load(path, weights_only=True)["model"]["classifier.weight"]   # torch itself is silent
    assert torch.isfinite(tampered).all() and not torch.equal(tampered, weight)
    with pytest.raises(CheckpointError, match=r"model.pt: the weights do not match the checksum"):
        load_model(path)


def test_a_checkpoint_without_digest_loads_but_not_with_nan_weights(saved, tmp_path):
    """Checkpoints written before the digest load; a NaN weight is refused by name."""
    net, _ = saved
    state = {k: v.clone() for k, v in net.state_dict().items()}
    legacy = tmp_path / "legacy.pt"
    torch.save({"config": net.config, "model": state}, legacy)
    assert torch.equal(load_model(legacy).state_dict()["classifier.weight"], state["classifier.weight"])
    state["classifier.weight"][0, 0] = float("nan")
    torch.save({"config": net.config, "model": state}, legacy)
    with pytest.raises(CheckpointError, match=r"legacy.pt: weights that are not finite .* in "
                                              r"classifier.weight: training diverged"):
        load_model(legacy)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint" * 10, None])
def test_unreadable_files_are_named_with_the_fix(saved, content):
    """Zero bytes, garbage, and a checkpoint cut in half: one message naming the file."""
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content is None else content)
    with pytest.raises(CheckpointError, match=r"model.pt: cannot read the checkpoint \(.+\); delete it "
                                              r"and run the stage that writes it again"):
        load_checkpoint(path)


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"nowhere.pt: no such checkpoint; run the stage"):
        load_checkpoint(tmp_path / "nowhere.pt")


def test_the_digest_sees_every_tensor_of_a_training_checkpoint():
    """Optimiser moments and RNG state count too; other values (the step) do not."""
    payload = {"model": {"w": torch.ones(3)}, "optimizer": {"state": {0: {"exp_avg": torch.zeros(3)}}},
               "rng": {"torch": torch.arange(4, dtype=torch.uint8), "numpy": np.zeros(2)}, "step": 5}
    base = tensors_digest(payload)
    payload["optimizer"]["state"][0]["exp_avg"][1] = 1e-30
    assert tensors_digest(payload) != base
    payload["optimizer"]["state"][0]["exp_avg"][1] = 0.0
    assert tensors_digest({**payload, "step": 6}) == base
