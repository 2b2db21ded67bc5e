"""`cfnet bench train`: img/s, the stage split, and loss-neutral comparisons."""

from __future__ import annotations

import json

import pytest
from tiny import TINY_MODEL

from cfnet.cli import main as cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bench_train_reports_throughput_and_shares(tmp_path, capsys):
    out = tmp_path / "train.json"
    argv = ["bench", "train", *TINY_MODEL, "--num-images", "8", "--size", "64", "--batch-size", "2",
            "--iters", "2", "--warmup", "1", "--device", "cpu", "--json", str(out)]
    assert cli(argv) == 0
    data = json.loads(out.read_text())
    (base,) = data["models"]
    assert base["batch_size"] == 2 and len(base["losses"]) == len(base["iter_ms"]) == 3
    assert base["images_per_s"] == pytest.approx(2000 / base["median_iter_ms"])
    assert set(base["share"]) == {"data", "forward", "backward", "optimizer"}
    assert sum(base["share"].values()) == pytest.approx(1.0)
    assert base["share"]["forward"] > 0 and base["share"]["backward"] > 0
    assert "img/s" in capsys.readouterr().out


def test_loader_workers_leave_the_loss_curve_unchanged(tmp_path, capsys):
    # data loading in a worker process is the same seeded stream: the same losses, bit for bit
    out = tmp_path / "train.json"
    argv = ["bench", "train", *TINY_MODEL, "data.num_workers=0", "--num-images", "8", "--size", "64",
            "--batch-size", "2", "--iters", "3", "--warmup", "0", "--device", "cpu",
            "--vs", "data.num_workers=1", "--json", str(out)]
    assert cli(argv) == 0
    data = json.loads(out.read_text())
    base, variant = data["models"]
    assert base["losses"] == variant["losses"]
    assert data["speedup"] == pytest.approx(variant["images_per_s"] / base["images_per_s"])
    assert "speed-up variant / base" in capsys.readouterr().out
