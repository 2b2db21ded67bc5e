"""cfnet.engine.runtime: device choice, the torchrun environment and the process group's lifetime."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from cfnet.engine.runtime import (
    DistEnv,
    all_reduce_mean,
    dist_env,
    distribute,
    process_group,
    resolve_device,
    to_device,
)


def test_resolve_device_auto_and_a_missing_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="use --device cpu"):
        resolve_device("cuda")


def test_a_bare_cuda_device_is_this_ranks_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 1)
    assert resolve_device("cuda:0", local_rank=3) == torch.device("cuda", 0)


def test_dist_env_reads_torchrun_variables(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert dist_env() == DistEnv(rank=0, world_size=1, local_rank=0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dist_env() == (3, 4, 1)


def _record_group_calls(monkeypatch, initialized: bool) -> list:
    calls: list = []
    state = {"up": initialized}

    def init(backend):
        calls.append(("init", backend))
        state["up"] = True

    def destroy():
        calls.append(("destroy",))
        state["up"] = False

    monkeypatch.setattr(dist, "is_initialized", lambda: state["up"])
    monkeypatch.setattr(dist, "init_process_group", init)
    monkeypatch.setattr(dist, "destroy_process_group", destroy)
    return calls


def test_process_group_is_set_up_under_torchrun_and_torn_down_even_on_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    calls = _record_group_calls(monkeypatch, initialized=False)
    with pytest.raises(RuntimeError, match="boom"), process_group("cpu") as env:
        assert env.rank == 1 and env.world_size == 2 and calls == [("init", "gloo")]
        raise RuntimeError("boom")
    assert calls == [("init", "gloo"), ("destroy",)]


def test_process_group_leaves_a_callers_group_and_a_single_process_alone(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    callers = _record_group_calls(monkeypatch, initialized=True)
    with process_group("cpu"):
        pass
    assert callers == []
    monkeypatch.setenv("WORLD_SIZE", "1")
    single = _record_group_calls(monkeypatch, initialized=False)
    with process_group("cpu") as env:
        assert env.world_size == 1
    assert single == []


def test_one_process_runs_the_model_itself():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    saved, net = distribute(model, torch.device("cpu"), 1, sync_bn=True)
    assert saved is model and net is model
    values = torch.tensor([1.0, float("nan")])
    assert all_reduce_mean(values, 1) is values


def test_to_device_moves_tensors_and_keeps_the_rest():
    target = {"masks": torch.zeros(2, 3), "file_name": "a.png", "image_id": 7}
    moved = to_device(target, torch.device("cpu"))
    assert moved.keys() == target.keys() and moved["file_name"] == "a.png" and moved["image_id"] == 7
    assert torch.equal(moved["masks"], target["masks"])
