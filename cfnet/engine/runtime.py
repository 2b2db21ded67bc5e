"""Where a command runs: the device, and the process group when started by ``torchrun``.

Every command that runs a model (``cfnet train``, ``eval``, ``predict``, ``analyze``, ``bench``)
picks its device with :func:`resolve_device`; only training is distributed.

**DDP** under torchrun: NCCL on CUDA, gloo on CPU (:func:`process_group`); each rank takes
``batch_size / world_size`` images; gradients are averaged by DDP (:func:`distribute`). With
``backbone.norm=bn`` on CUDA the BN layers become SyncBatchNorm (not available on CPU, where BN
statistics stay per rank). Only rank 0 writes files and shows the bar. Note that DDP averages the
per-rank losses; SOLOv2 normalises its losses by the number of positives *in the (per-rank)
batch*, so 2 × b and 1 × 2b agree exactly only when the ranks' halves have equal positive counts —
the usual behaviour of SOLO-type models.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

__all__ = [
    "DistEnv",
    "all_reduce_mean",
    "dist_env",
    "distribute",
    "process_group",
    "resolve_device",
    "to_device",
]


class DistEnv(NamedTuple):
    """This process's place in a torchrun job; ``(0, 1, 0)`` when started alone."""

    rank: int
    world_size: int
    local_rank: int


def dist_env() -> DistEnv:
    """Read from torchrun's environment variables, so it is known before any process group exists."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistEnv(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """``auto`` / ``None`` means CUDA when there is one; a bare ``cuda`` means this rank's GPU.

    Asking for CUDA where there is none is a ``ValueError`` that says what to pass instead.
    """
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: CUDA is not available on this machine (use --device cpu)")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


@contextlib.contextmanager
def process_group(device: str | torch.device | None = None) -> Iterator[DistEnv]:
    """The torchrun job this process belongs to, with its process group set up for the block.

    Under torchrun (``WORLD_SIZE > 1``) the group is initialised here unless the caller already
    did, and then destroyed when the block ends, so :func:`cfnet.engine.train.train` works both as
    a torchrun entry point and inside a caller's own group; a single process gets no group.
    """
    env = dist_env()
    own_group = False
    if env.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if resolve_device(device, env.local_rank).type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        own_group = True
    try:
        yield env
    finally:
        if own_group and dist.is_initialized():
            dist.destroy_process_group()


def distribute(
    model: torch.nn.Module, device: torch.device, world_size: int, *, sync_bn: bool
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(model, net)``: the module to save and to optimise, and the one to call.

    With one process both are ``model``. Under DDP ``net`` is the DDP wrapper, and ``model`` has
    SyncBatchNorm in place of BN when ``sync_bn`` and on CUDA (the only device that supports it).
    """
    if world_size > 1 and device.type == "cuda" and sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net: torch.nn.Module = model
    if world_size > 1:
        # Some FPN levels / branches may not reach the loss for every config (e.g. fewer grids
        # than pyramid levels), hence find_unused_parameters.
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    return model, net


def to_device(target: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A target dict with its tensors on ``device`` (its other values, e.g. file names, as they are)."""
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in target.items()}


def all_reduce_mean(values: torch.Tensor, world_size: int) -> torch.Tensor:
    """The mean of ``values`` over the ranks, in place (a no-op for one process).

    Every rank gets the same numbers, so a decision taken on them (stop on a NaN) is taken together.
    """
    if world_size > 1:
        dist.all_reduce(values)
        values /= world_size
    return values
