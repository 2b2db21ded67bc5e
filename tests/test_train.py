"""cfnet.engine.train: exact resume, DDP == one big batch, NaN stop, one training step.

The data order is tested in test_sampler.py, the LR schedule in test_solver.py.

All runs use a shrunken ``shapes-tiny`` on a few 64-px ``shapes`` images, one CPU thread each (two
threads per process on a shared 2-core machine only add contention).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import TINY_TRAINING

import cfnet
from cfnet.cli import main as cli
from cfnet.config import get_config
from cfnet.data import generate_shapes
from cfnet.engine.solver import build_solver
from cfnet.engine.train import TrainingDiverged, train, train_step

ROOT = Path(__file__).resolve().parents[1]
TINY = TINY_TRAINING


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    generate_shapes(root, num_train=8, num_val=2, size=64, seed=3, progress=False)
    return root


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_resume_2_plus_2_equals_4_straight(shapes, tmp_path):
    # Random multi-scale resize and flips stay on: the per-sample seeding must make them repeat.
    # warmup 2 + a step at 3 make the LR change inside both halves.
    over = TINY + ["data.min_size_train=[48, 64]", "data.flip_prob=0.5", "solver.warmup_iters=2",
                   "solver.steps=[3]"]  # fmt: skip
    records = []
    straight = train(
        get_config("shapes-tiny", over + ["solver.max_iters=4"]), shapes, tmp_path / "a",
        progress=False, callback=records.append, evaluate_val=False,
    )  # fmt: skip
    assert straight["iteration"] == 4 and [r["iteration"] for r in records] == [1, 2, 3, 4]

    args = ["train", "--preset", "shapes-tiny", "--data", str(shapes), "--out", str(tmp_path / "b"),
            "--no-progress", "--no-eval", *over]  # fmt: skip
    assert cli(args + ["--max-iters", "2"]) == 0
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["iteration"] == 2
    assert cli(args + ["--max-iters", "4", "--resume"]) == 0

    a, b = _weights(tmp_path / "a" / "model_final.pt"), _weights(tmp_path / "b" / "model_final.pt")
    assert a.keys() == b.keys()
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    assert worst < 1e-6
    # Not vacuous: training moved the weights.
    init = cfnet.build_model(get_config("shapes-tiny", over)).state_dict()
    assert any(not torch.allclose(init[k], a[k]) for k in a if a[k].is_floating_point())

    log = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2, 3, 4]
    for ra, rb in zip(records, log):
        assert ra["lr"] == pytest.approx(rb["lr"]) and ra["loss"] == pytest.approx(rb["loss"], rel=1e-5)
        assert {"loss_mask", "loss_cate", "loss_sem", "time"} <= set(rb)
    assert [r["lr"] for r in records] == pytest.approx([1e-5, 5.05e-4, 1e-3, 1e-4])
    assert (tmp_path / "b" / "config.yaml").is_file()

    # A fresh run into an existing run folder refuses instead of overwriting it.
    assert cli(args + ["--max-iters", "4"]) == 2


def test_nan_loss_stops_and_keeps_last_good_checkpoint(shapes, tmp_path, monkeypatch, capsys):
    from cfnet.model import CFNet

    forward = CFNet.forward
    calls = {"n": 0}

    def poisoned(self, images, targets=None):
        out = forward(self, images, targets)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 3:
                out = dict(out, loss_mask=out["loss_mask"] * float("nan"))
        return out

    monkeypatch.setattr(CFNet, "forward", poisoned)
    out = tmp_path / "run"
    args = ["train", "--preset", "shapes-tiny", "--data", str(shapes / "train"), "--out", str(out),
            "--max-iters", "5", "--no-progress", *TINY, "data.min_size_train=[64]",
            "solver.checkpoint_period=2"]  # fmt: skip
    assert cli(args) == 1
    err = capsys.readouterr().err
    assert "non-finite loss at iteration 3" in err and "loss_mask=nan" in err
    assert "loss_sem=" in err and "loss_cate=" in err
    assert f"last good checkpoint {out / 'last.pt'} (iteration 2) was kept" in err
    model, _, meta = cfnet.load_checkpoint(out / "last.pt")
    assert meta["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    assert not (out / "model_final.pt").exists()

    # The function raises the same error for notebooks.
    calls["n"] = 0
    with pytest.raises(TrainingDiverged, match="iteration 3"):
        cfg = get_config("shapes-tiny", TINY + ["solver.max_iters=3"])
        train(cfg, shapes, tmp_path / "r2", progress=False)


def _duplicated_split(src: Path, dst: Path, copies: int) -> None:
    """A split of ``copies`` identical images (distinct file names and ids) from ``src``'s first one."""
    data = json.loads((src / "panoptic.json").read_text())
    img, ann = data["images"][0], data["annotations"][0]
    (dst / "images").mkdir(parents=True)
    (dst / "panoptic").mkdir()
    images, anns = [], []
    for k in range(copies):
        name = f"copy{k}"
        shutil.copy(src / "images" / img["file_name"], dst / "images" / f"{name}.png")
        shutil.copy(src / "panoptic" / ann["file_name"], dst / "panoptic" / f"{name}.png")
        images.append(dict(img, id=k, file_name=f"{name}.png"))
        anns.append(dict(ann, image_id=k, file_name=f"{name}.png"))
    (dst / "panoptic.json").write_text(json.dumps(dict(data, images=images, annotations=anns)))


def test_ddp_two_gloo_processes_equal_one_process_with_double_batch(shapes, tmp_path):
    """2 processes × batch 1 (torchrun, gloo) == 1 process × batch 2 after one SGD step.

    Exactness needs the two runs to compute the same gradient, which holds when the DDP average of
    the per-rank loss gradients equals the gradient of the single-process loss:
    * normalisation layers must not depend on the batch: frozen BN in the backbone (the heads use
      GN, per image), where train-mode BN would see 1 vs 2 images;
    * no random augmentation (one train size, no flip) so both runs see the very same pixels;
    * SOLOv2's losses are normalised by counts over the batch (dice: mean over the positives of
      the batch; focal: sum / (num_pos + 1)), so a per-rank loss is not half of the batch loss in
      general — the usual behaviour of SOLO-type models under DDP. With identical images in the
      two halves the dice and semantic means agree exactly; the "+1" of the focal normaliser still
      does not (F/(n+1) vs 2F/(2n+1)), so its weight is 0 here (its graph stays connected, its
      gradient is 0). That the ranks split the global batch correctly is tested on the sampler above.
    * SGD, not AdamW: Adam's first step is nearly invariant to the gradient's scale, so it would
      not notice a sum-instead-of-average bug.
    """
    data = tmp_path / "dup"
    _duplicated_split(shapes / "train", data, copies=4)
    over = TINY + ["model.backbone.norm=frozen_bn", "data.min_size_train=[64]", "data.flip_prob=0",
                   "model.instance.focal_weight=0", "solver.optimizer=sgd", "solver.base_lr=0.05",
                   "solver.warmup_iters=0", "solver.clip_grad_norm=null"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "cfnet", "train", "--preset", "shapes-tiny", "--data", str(data), "--out",
           str(tmp_path / "ddp"), "--max-iters", "1", "--no-progress", "--device", "cpu", *over]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    train(get_config("shapes-tiny", over + ["solver.max_iters=1"]), data, tmp_path / "single", progress=False)
    ddp_ckpt = torch.load(tmp_path / "ddp" / "model_final.pt", weights_only=True)
    a, b = ddp_ckpt["model"], _weights(tmp_path / "single" / "model_final.pt")
    assert a.keys() == b.keys()  # the DDP wrapper's "module." prefix was removed
    init = cfnet.build_model(get_config("shapes-tiny", over)).state_dict()
    moved = [k for k in a if a[k].is_floating_point() and not torch.allclose(init[k], b[k])]
    assert len(moved) > 10  # the step changed the weights, so agreeing means something
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    print(f"DDP vs single: max |diff| {worst:.2e}, {len(moved)} tensors moved")
    assert worst < 1e-5
    # Only rank 0 wrote: one log line per logged iteration, not two.
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 1
    assert torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["extra"]["world_size"] == 2


def test_resume_accepts_a_checkpoint_written_before_a_config_key_existed(tmp_path):
    """A key added later (here model.backbone.name) takes its default: no false 'config differs'."""
    from cfnet.checkpoint import CheckpointError
    from cfnet.engine.train import _check_resume_config

    cfg = cfnet.get_config("shapes-tiny")
    old = cfg.to_dict()
    del old["model"]["backbone"]["name"]
    _check_resume_config(cfg, {"config": old}, tmp_path / "last.pt", main_proc=True)
    changed = cfnet.get_config("shapes-tiny", ["model.semantic.module=none"])
    with pytest.raises(CheckpointError, match="model.semantic.module"):
        _check_resume_config(changed, {"config": old}, tmp_path / "last.pt", main_proc=True)


class _TwoTerms(torch.nn.Module):
    """A stand-in for CFNet's training forward: a dict of loss terms from (images, targets)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        self.scale, self.kink = 1.0, False

    def forward(self, images, targets):
        x = torch.stack(images).sum(0)
        losses = {"loss_b": (self.w * x).sum() * self.scale, "loss_a": self.w.pow(2).sum()}
        if self.kink:  # sqrt at 0: a finite loss (0) with an infinite gradient
            losses["loss_c"] = torch.sqrt(self.w.sum() - self.w.sum().detach())
        return losses


def test_train_step_sums_the_terms_steps_once_and_refuses_a_nan():
    cfg = get_config("shapes-tiny", ["solver.optimizer=sgd", "solver.base_lr=0.1", "solver.momentum=0",
                                     "solver.weight_decay=0", "solver.warmup_iters=0",
                                     "solver.clip_grad_norm=null"])  # fmt: skip
    net = _TwoTerms()
    solver = build_solver(cfg, net, torch.device("cpu"))
    images = [torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.0])]
    losses, grad_norm = train_step(net, solver, images, [{}, {}], iteration=1)
    assert list(losses) == ["loss_a", "loss_b", "loss"]  # the record's key order
    assert losses == pytest.approx({"loss_a": 5.0, "loss_b": -0.5, "loss": 4.5})
    grad = torch.tensor([2 * 1.0 + 1.5, 2 * -2.0 + 1.0])  # d(w·w + w·x)/dw = 2w + x
    assert grad_norm == pytest.approx(float(grad.norm()))
    assert torch.allclose(net.w.detach(), torch.tensor([1.0, -2.0]) - 0.1 * grad)
    assert solver.scheduler.last_epoch == 1

    before = net.w.detach().clone()
    net.scale = float("nan")
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at iteration 7 \(loss_a=.*loss_b=nan"):
        train_step(net, solver, images, [{}, {}], iteration=7)
    assert torch.equal(net.w.detach(), before) and solver.scheduler.last_epoch == 1
    net.scale, net.kink = 1.0, True
    with pytest.raises(TrainingDiverged, match=r"non-finite gradient norm at iteration 8 \(losses .*c=0"):
        train_step(net, solver, images, [{}, {}], iteration=8)
    assert torch.equal(net.w.detach(), before)
