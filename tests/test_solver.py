"""cfnet.engine.solver: optimiser parameter groups, the LR schedule, and the solver of a run."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from cfnet.config import ConfigError, get_config
from cfnet.engine.solver import build_optimizer, build_scheduler, build_solver, lr_factor


def _net() -> torch.nn.Module:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))
    net[2].requires_grad_(False)  # a frozen part, as model.backbone.frozen_stages makes them
    return net


def test_lr_schedule_warmup_then_steps():
    cfg = get_config("shapes-tiny", ["solver.warmup_iters=10", "solver.warmup_factor=0.1",
                                     "solver.steps=[20, 30]", "solver.gamma=0.5"])  # fmt: skip
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(5, cfg) == pytest.approx(0.1 * 0.5 + 0.5)
    assert lr_factor(10, cfg) == 1.0 and lr_factor(19, cfg) == 1.0
    assert lr_factor(20, cfg) == 0.5 and lr_factor(29, cfg) == 0.5 and lr_factor(30, cfg) == 0.25


def test_scheduler_follows_lr_factor_from_the_config():
    cfg = get_config("shapes-tiny", ["solver.warmup_iters=3", "solver.steps=[4]", "solver.gamma=0.1"])
    optimizer = build_optimizer(cfg, _net())
    scheduler = build_scheduler(cfg, optimizer)
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([cfg.solver.base_lr * lr_factor(i, cfg) for i in range(6)])
    # The saved state is the position, not the schedule: a resumed run follows its own config.
    longer = get_config("shapes-tiny", ["solver.warmup_iters=3", "solver.steps=[8]", "solver.gamma=0.1"])
    resumed_opt = build_optimizer(longer, _net())
    resumed = build_scheduler(longer, resumed_opt)
    resumed_opt.load_state_dict(optimizer.state_dict())
    resumed.load_state_dict(scheduler.state_dict())
    assert resumed.last_epoch == 6
    assert resumed.get_last_lr()[0] == pytest.approx(cfg.solver.base_lr * lr_factor(6, cfg))
    resumed_opt.step()
    resumed.step()
    assert resumed_opt.param_groups[0]["lr"] == pytest.approx(longer.solver.base_lr * lr_factor(7, longer))
    assert lr_factor(7, longer) != lr_factor(7, cfg)


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_optimizer_decays_weights_only_and_skips_frozen_parameters(name, cls):
    cfg = get_config("shapes-tiny", [f"solver.optimizer={name}", "solver.weight_decay=0.01"])
    net = _net()
    optimizer = build_optimizer(cfg, net)
    assert type(optimizer) is cls
    decay, no_decay = optimizer.param_groups
    assert [p.shape for p in decay["params"]] == [net[0].weight.shape]
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    # conv bias, BN weight and bias; the frozen conv is not optimised at all
    assert {id(p) for p in no_decay["params"]} == {id(net[0].bias), id(net[1].weight), id(net[1].bias)}
    if name == "sgd":
        assert decay["momentum"] == cfg.solver.momentum


def test_optimizer_needs_trainable_parameters():
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer(get_config("shapes-tiny"), _net().requires_grad_(False))


def test_solver_on_cpu_runs_float32_and_clips_only_when_asked():
    net = _net()
    solver = build_solver(get_config("shapes-tiny", ["solver.amp=true"]), net, torch.device("cpu"))
    assert not solver.scaler.is_enabled()  # AMP is CUDA-only: no scaler, no autocast
    assert isinstance(solver.autocast(), contextlib.nullcontext)
    assert solver.max_norm == 35.0
    assert [id(p) for p in solver.params] == [id(p) for p in net.parameters() if p.requires_grad]
    assert len(solver.params) == 4
    off = build_solver(get_config("shapes-tiny", ["solver.clip_grad_norm=null"]), net, torch.device("cpu"))
    assert off.max_norm == math.inf  # the norm is still computed (and checked for finiteness)
