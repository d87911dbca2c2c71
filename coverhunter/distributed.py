"""Data-parallel training over processes (``torch.distributed``, launched by ``torchrun``).

Every process draws the same global P×K batch (one sampler, one seed) and trains on its own
contiguous block of it, whole works per process; the gradients are averaged by
``DistributedDataParallel``. What the CoverHunter loss and the network compute over the
*batch* is computed over the global batch, so N processes train as one process on the same
batch does (to float rounding, with dropout and the attention mask off):

- BatchNorm statistics (the masked BatchNorms and the BNNeck) are summed over processes;
- the batch-hard triplet loss [II-C] mines over every process's vectors.

Both go through :func:`all_sum`, a differentiable all-reduce. Without a process group every
helper here is the identity, so single-process code is unchanged bit for bit.
``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and the rendezvous variables that
:func:`init_from_env` reads; ``gloo`` runs on CPUs, ``nccl`` on GPUs.
"""
from __future__ import annotations

import os
import warnings

import torch
import torch.distributed as dist
from torch.distributed.nn import functional as dist_fn

# the differentiable all-reduce used below is the one torch documents for autograd; its
# suggested successor (_functional_collectives) is private and not differentiable everywhere
warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_reduce is deprecated",
                        FutureWarning)


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """The process that writes outputs, checkpoints and tracking (rank 0)."""
    return rank() == 0


def init_from_env(cuda: bool) -> bool:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1);
    ``nccl`` with ``cuda``, else ``gloo``. Returns whether this run is distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return active()


def all_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over processes, differentiable (the gradient is summed back too)."""
    return dist_fn.all_reduce(x, op=dist.ReduceOp.SUM) if active() else x


def all_rows(x: torch.Tensor) -> torch.Tensor:
    """``(b, ...)`` on each process → ``(world · b, ...)`` in rank order, differentiable.

    An all-reduce of zero-filled slots rather than an all-gather, whose backward needs a
    reduce-scatter or all-to-all that not every backend has."""
    if not active():
        return x
    slots = x.new_zeros((world_size(), *x.shape))
    slots[rank()] = x
    return all_sum(slots).flatten(0, 1)


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over processes (for metrics logged once)."""
    if not active():
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(values, (t / world_size()).tolist()))


def my_rows(batch_size: int) -> slice:
    """This process's block of a global batch (P works × K versions, grouped by work)."""
    n = world_size()
    if batch_size % n:
        raise ValueError(f"a batch of {batch_size} chunks (train.works_per_batch × "
                         f"train.versions_per_work) does not split evenly over {n} processes; "
                         f"make train.works_per_batch a multiple of {n}")
    per = batch_size // n
    return slice(rank() * per, (rank() + 1) * per)


def gather_objects(obj: object) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
    if not active():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if active():
        dist.barrier()
