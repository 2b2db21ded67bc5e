"""cfnet.checkpoint: round trip, weights_only safety, atomic writes, and clear errors for bad files."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
from tiny import TINY_MODEL

import cfnet
from cfnet import checkpoint as ck
from cfnet.config import get_config
from cfnet.model import build_model

TINY = TINY_MODEL


@pytest.fixture(scope="module")
def cfg():
    return get_config("shapes-tiny", TINY)


@pytest.fixture(scope="module")
def model(cfg):
    torch.manual_seed(0)
    return build_model(cfg)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, model, cfg):
    """A checkpoint with optimiser and scheduler states after one SGD step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 0.5)
    for p in model.parameters():
        p.grad = torch.ones_like(p) * 1e-3
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    path = tmp_path_factory.mktemp("ckpt") / "sub" / "last.pt"
    ck.save_checkpoint(
        path, model=model, cfg=cfg, optimizer=opt, scheduler=sched, iteration=7, extra={"a": 1}
    )
    return path


def test_round_trip(saved, model, cfg):
    loaded, cfg2, meta = cfnet.load_checkpoint(saved)
    assert not loaded.training
    assert cfg2.to_dict() == cfg.to_dict()
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1
    assert meta["iteration"] == 7 and meta["extra"] == {"a": 1}
    assert meta["categories"] == model.categories.to_json()
    assert meta["optimizer"]["state"] and meta["scheduler"]["last_epoch"] == 1
    assert meta["path"] == str(saved)
    assert "model" not in meta and "config" not in meta


def test_plain_torch_load_weights_only_reads_everything(saved):
    # The whole file, RNG states included, is tensors and plain containers.
    data = torch.load(saved, weights_only=True)
    assert data["format"] == ck.FORMAT and data["version"] == ck.VERSION
    assert set(data["rng"]) == {"torch", "cuda", "numpy", "python"}


def test_rng_state_round_trip():
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    state = ck.get_rng_state()
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    ck.set_rng_state(state)
    second = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert first[2] == second[2]


def test_atomic_write_leaves_no_temp_and_keeps_old_file_on_failure(tmp_path, model, cfg, monkeypatch):
    path = tmp_path / "last.pt"
    ck.save_checkpoint(path, model=model, cfg=cfg, iteration=1)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert path.stat().st_mode & 0o044  # readable like any file written with open(), not 0600

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        ck.save_checkpoint(path, model=model, cfg=cfg, iteration=2)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind
    assert ck.read_checkpoint(path)["iteration"] == 1  # the old checkpoint is intact


def test_ddp_wrapper_is_unwrapped(tmp_path, cfg):
    import torch.distributed as dist

    m = torch.nn.Linear(2, 2)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(m)
        ck.save_checkpoint(tmp_path / "x.pt", model=ddp, cfg=cfg)
    finally:
        dist.destroy_process_group()
    assert set(ck.read_checkpoint(tmp_path / "x.pt")["model"]) == {"weight", "bias"}


# ----------------------------------------------------------------------------------------------
# bad files: every error names the file


def _expect(path, *fragments):
    with pytest.raises(ck.CheckpointError) as info:
        cfnet.load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    for f in fragments:
        assert f in msg, msg
    return msg


def test_missing_and_folder(tmp_path):
    _expect(tmp_path / "nope.pt", "no such file")
    _expect(tmp_path, "is a folder")


def test_truncated_file(tmp_path, saved):
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(saved.read_bytes()[:100_000])
    _expect(bad, "corrupted or truncated")


def test_garbage_bytes(tmp_path):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"\x00not a torch file at all" * 50)
    _expect(bad, "cannot be read")


def test_bare_state_dict_is_foreign(tmp_path, model):
    bad = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bad)
    _expect(bad, "not a CFNet checkpoint", "bare state_dict")


def test_foreign_pickle_is_refused_not_executed(tmp_path):
    bad = tmp_path / "evil.pt"
    # A pickled object of an arbitrary class: weights_only must refuse it (no code runs).
    torch.save({"format": ck.FORMAT, "obj": _Foreign()}, bad)
    _expect(bad, "not a CFNet checkpoint", "refused for safety")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps([1, 2, 3]))
    _expect(plain, "cannot be read")


class _Foreign:
    pass


def test_other_format_and_future_version(tmp_path, saved):
    data = torch.load(saved, weights_only=True)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}, "epoch": 3}, other)
    _expect(other, "not a CFNet checkpoint", "format tag None")
    torch.save(dict(data, version=ck.VERSION + 1), tmp_path / "future.pt")
    _expect(tmp_path / "future.pt", "version")
    torch.save({k: v for k, v in data.items() if k != "config"}, tmp_path / "partial.pt")
    _expect(tmp_path / "partial.pt", "missing config")


def test_edited_weights_list_missing_unexpected_and_shapes(tmp_path, saved):
    data = torch.load(saved, weights_only=True)
    sd = dict(data["model"])
    dropped = sorted(sd)[0]
    del sd[dropped]
    sd["extra.weight"] = torch.zeros(3)
    grown = next(k for k, v in sd.items() if v.ndim == 4)
    sd[grown] = torch.zeros(1, 1, 1, 1)
    torch.save(dict(data, model=sd), tmp_path / "edited.pt")
    msg = _expect(tmp_path / "edited.pt", "1 missing keys", "1 unexpected keys", "1 shape mismatches")
    assert dropped in msg and "extra.weight" in msg and grown in msg


def test_config_that_builds_another_architecture(tmp_path, saved):
    data = torch.load(saved, weights_only=True)
    data["config"]["model"]["backbone"]["fpn_channels"] = 48  # weights are for 32
    torch.save(data, tmp_path / "mismatch.pt")
    _expect(tmp_path / "mismatch.pt", "do not match the architecture", "shape mismatches")
    data["config"]["model"]["backbone"]["depth"] = 7
    torch.save(data, tmp_path / "badcfg.pt")
    _expect(tmp_path / "badcfg.pt", "config is invalid")


def test_default_checkpoint_missing_is_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "DEFAULT_CHECKPOINT", tmp_path / "weights" / "shapes-tiny.pt")
    with pytest.raises(ck.CheckpointError, match="default checkpoint .* is not there yet"):
        cfnet.load_checkpoint("default")


def test_default_resolves_to_shipped_file(tmp_path, monkeypatch, saved):
    monkeypatch.setattr(ck, "DEFAULT_CHECKPOINT", saved)
    _, _, meta = cfnet.load_checkpoint("default")
    assert meta["path"] == str(saved)
