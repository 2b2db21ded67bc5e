"""What turns a loss into a parameter update: optimiser, LR schedule, gradient clipping, AMP.

* **Optimiser** per ``solver.optimizer``: SGD with momentum (the paper's, ``paper-*`` presets) or
  AdamW (the ``shapes-tiny`` preset, DESIGN.md §9). Weight decay is applied to weight matrices and
  conv kernels only: parameters with ``ndim <= 1`` (biases and the affine parameters of BN / GN) get
  none, as is usual for both optimisers.
* **Schedule**: linear warm-up from ``warmup_factor`` over ``warmup_iters``, then ×``gamma`` at each
  of ``steps`` (a ``LambdaLR`` whose state is part of the checkpoint; the factors are recomputed
  from the config, so the config governs the schedule on resume).
* **Gradient clipping** by global norm (``solver.clip_grad_norm``; null = off). The norm is computed
  either way: a non-finite gradient norm stops training like a non-finite loss.
* **AMP** on CUDA only (``solver.amp``): bf16 autocast where the GPU supports it, else fp16 autocast
  with a GradScaler. CPU runs in float32.

:func:`build_solver` gathers these into one :class:`Solver`, what
:func:`cfnet.engine.train.train_step` needs besides the model and the batch.
"""

from __future__ import annotations

import bisect
import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from cfnet.config import Config, ConfigError

__all__ = ["Solver", "build_optimizer", "build_scheduler", "build_solver", "lr_factor"]


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD-momentum or AdamW; no weight decay on parameters with ndim <= 1 (biases, norm affines)."""
    s = cfg.solver
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [g for g in ({"params": decay}, {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    if not groups:
        raise ConfigError("the model has no trainable parameters (check model.backbone.frozen_stages)")
    if s.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=s.base_lr, momentum=s.momentum, weight_decay=s.weight_decay)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=s.base_lr, weight_decay=s.weight_decay)
    raise ConfigError(f"config key 'solver.optimizer': {s.optimizer!r} is not one of sgd, adamw")


def lr_factor(iteration: int, cfg: Config) -> float:
    """LR multiplier at an iteration: linear warm-up, then ×gamma at each step."""
    s = cfg.solver
    factor = s.gamma ** bisect.bisect_right(sorted(s.steps), iteration)
    if iteration < s.warmup_iters:
        alpha = iteration / s.warmup_iters
        factor *= s.warmup_factor * (1 - alpha) + alpha
    return factor


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """The :func:`lr_factor` schedule as a ``LambdaLR`` (its state is the iteration count)."""

    # A closure (not a callable object) so the state_dict keeps no copy of the schedule: on resume
    # the config's schedule applies.
    def factor(it: int) -> float:
        return lr_factor(it, cfg)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class Solver:
    """The update rule of one run: optimiser, schedule, AMP and clipping, built once and stepped
    together, so a training step takes one object rather than six."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    autocast: Callable[[], contextlib.AbstractContextManager]
    params: list[torch.nn.Parameter]  # the trainable ones, whose gradient norm is clipped
    max_norm: float  # math.inf when clipping is off: the norm is still computed and checked


def build_solver(cfg: Config, model: torch.nn.Module, device: torch.device) -> Solver:
    """The solver of ``cfg`` for ``model`` (the module whose parameters are updated) on ``device``."""
    s = cfg.solver
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    use_amp = s.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device_type="cuda", dtype=amp_dtype) if use_amp else contextlib.nullcontext()

    return Solver(
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        autocast=autocast,
        params=[p for p in model.parameters() if p.requires_grad],
        max_norm=s.clip_grad_norm if s.clip_grad_norm is not None else math.inf,
    )
