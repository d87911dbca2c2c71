"""Data-parallel training (coverhunter.distributed): two gloo processes on this machine train
as one process on the same global batch does, and resume from their checkpoints."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_train import N_WORKS, build

from coverhunter import distributed
from coverhunter.model.checkpoint import load_model
from coverhunter.model.masking import MaskedBatchNorm
from coverhunter.model.neck import BNNeck
from coverhunter.training.augment import FeatureAugment
from coverhunter.training.batches import BatchMaker
from coverhunter.training.loop import train

N_VERSIONS = 4


def catalogue() -> tuple[list[np.ndarray], np.ndarray]:
    """Random log-CQT-like features of different lengths, 8 works × 4 versions."""
    rng = np.random.default_rng(0)
    feats = [rng.uniform(-80, 0, (int(rng.integers(150, 300)), 96)).astype(np.float32)
             for _ in range(N_WORKS * N_VERSIONS)]
    return feats, np.repeat(np.arange(N_WORKS), N_VERSIONS)


def fit(p, out_dir, steps: int) -> list[dict]:
    """The training loop with the tricks on (pitch roll, masks), as the pipeline runs it."""
    model, loss, ds, sampler = build(p, *catalogue())     # as test_train builds its runs
    make = BatchMaker(ds, p.train.seed, features=FeatureAugment(p.augment, 12))
    schedule = dataclasses.replace(p.train, max_steps=steps, checkpoint_every=2)
    return train(model, loss, ds, sampler, schedule, out_dir, progress=False, make=make).history


def _worker(rank: int, world: int, store: str, fn, args: tuple, result: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        out = fn(*args)
        if rank == 0:
            torch.save(out, result)
    finally:
        dist.destroy_process_group()


def in_processes(tmp_path, world: int, fn, *args):
    """``fn(*args)`` in ``world`` gloo processes; rank 0's return value."""
    store, result = tmp_path / f"store-{np.random.randint(1 << 30)}", tmp_path / "result.pt"
    mp.spawn(_worker, args=(world, str(store), fn, args, str(result)), nprocs=world, join=True)
    return torch.load(result, weights_only=False)


@pytest.fixture(scope="module")
def setup(tiny):
    # dropout and the attention-logit mask draw per process: off, so the runs are comparable
    return dataclasses.replace(tiny, model=dataclasses.replace(tiny.model, dropout=0.0, pool_mask_prob=0.0))


def test_two_processes_follow_one_process_on_the_same_global_batch(setup, tmp_path):
    torch.set_num_threads(1)
    one = fit(setup, tmp_path / "one", 6)
    two = in_processes(tmp_path, 2, fit, setup, tmp_path / "two", 6)
    for key in ("total", "focal", "center", "triplet"):
        np.testing.assert_allclose([h[key] for h in two], [h[key] for h in one], rtol=2e-4, err_msg=key)
    # the trained networks embed alike (compared by what they compute: weights that the output
    # does not depend on, such as the attention keys' bias, get float-noise gradients that
    # Adam turns into steps of either sign)
    a, b = (load_model(tmp_path / run / "checkpoint.pt").eval() for run in ("one", "two"))
    x = torch.tensor(catalogue()[0][0][None, :150])
    with torch.no_grad():
        ea, eb = a(x, torch.tensor([150])).embedding, b(x, torch.tensor([150])).embedding
    assert torch.nn.functional.cosine_similarity(ea, eb).item() > 0.9999


def test_two_processes_resume_from_their_checkpoint(setup, tmp_path):
    full = in_processes(tmp_path, 2, fit, setup, tmp_path / "full", 6)
    in_processes(tmp_path, 2, fit, setup, tmp_path / "cut", 4)          # stopped after step 4
    resumed = in_processes(tmp_path, 2, fit, setup, tmp_path / "cut", 6)
    assert [h["total"] for h in resumed] == [h["total"] for h in full]


def _synced_norms(x, mask, pre):
    """Rank r's block of the batch through a MaskedBatchNorm and a BNNeck: outputs, running
    statistics and the gradients of a loss over every process's outputs. Every process
    computes that whole loss, so each gradient is ``world`` times its share: the parameters'
    gradients are summed over processes and divided by ``world`` (what data parallelism
    averages), the inputs' divided by ``world``."""
    torch.manual_seed(0)
    norm, neck = MaskedBatchNorm(x.shape[-1]), BNNeck(pre.shape[-1], 4)
    rows = distributed.my_rows(len(x))
    x, mask, pre = x[rows].clone().requires_grad_(), mask[rows], pre[rows].clone().requires_grad_()
    y, e = norm(x, mask), neck(pre)
    loss = (distributed.all_rows(y) ** 3).sum() + (distributed.all_rows(e) ** 3).sum()
    loss.backward()
    n = distributed.world_size()
    grads = [distributed.all_sum(g) / n for g in (neck.linear.weight.grad, norm.weight.grad, norm.bias.grad)]
    grads += [distributed.all_rows(g) / n for g in (x.grad, pre.grad)]
    return (distributed.all_rows(y).detach(), distributed.all_rows(e).detach(), norm.running_var,
            neck.norm.running_mean, *(g.detach() for g in grads))


def test_batch_norms_use_the_statistics_of_the_global_batch(tmp_path):
    """Padded frames of one block must not count: the lengths differ between the blocks."""
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(2.0, 3.0, (6, 10, 5)), dtype=torch.float32)
    mask = torch.arange(10)[None] < torch.tensor([10, 3, 7, 10, 2, 5])[:, None]
    pre = torch.tensor(rng.normal(size=(6, 8)), dtype=torch.float32)
    one = _synced_norms(x, mask, pre)
    two = in_processes(tmp_path, 2, _synced_norms, x, mask, pre)
    for a, b in zip(one, two):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_a_batch_that_does_not_split_evenly_names_the_param(monkeypatch):
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 3)
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 0)
    with pytest.raises(ValueError, match="train.works_per_batch a multiple of 3"):
        distributed.my_rows(16)
    assert distributed.my_rows(18) == slice(0, 6)
