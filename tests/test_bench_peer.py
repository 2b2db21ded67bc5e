"""`cfnet bench model --vs-torchvision maskrcnn_resnet50_fpn`: the peer runs in the same alternation."""

from __future__ import annotations

import json

import pytest
import torch

from cfnet.bench.model import build_peer, time_torchvision
from cfnet.cli import main as cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bench_model_vs_maskrcnn(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "model", "--preset", "shapes-tiny", "--size", "64x96", "--repeats", "1", "--warmup", "0",
            "--device", "cpu", "--vs-torchvision", "maskrcnn_resnet50_fpn", "--json", str(out)]
    assert cli(argv) == 0
    data = json.loads(out.read_text())
    assert [m["name"] for m in data["models"]] == ["base", "maskrcnn_resnet50_fpn"]
    base, peer = data["models"]
    assert data["peer"] == "maskrcnn_resnet50_fpn" and data["ratio"] is None
    assert 44e6 < peer["params"] < 45e6  # torchvision's Mask R-CNN R50-FPN, 91 classes
    assert peer["components_ms"]["scm"] == peer["components_ms"]["icm"] == 0
    assert peer["components_ms"]["heads"] > 0 and len(peer["samples_ms"]) == 1
    key = "base / maskrcnn_resnet50_fpn"
    assert data["peer_ratios"][key] == pytest.approx(base["median_ms"] / peer["median_ms"])
    assert f"ratio {key}" in capsys.readouterr().out


def test_peer_keeps_the_input_size_and_runs_its_mask_head():
    torch.manual_seed(0)
    model = build_peer("maskrcnn_resnet50_fpn", (64, 96)).eval()
    image = torch.rand(3, 64, 96)
    with torch.no_grad():
        images, _ = model.transform([image])
        assert images.image_sizes == [(64, 96)]  # not resized to 800
        out = model([image])[0]
    # box_score_thresh=0: random weights still give detections, so masks are predicted and pasted
    assert out["masks"].shape[0] > 0 and out["masks"].shape[-2:] == (64, 96)
    times = time_torchvision(model, image, torch.device("cpu"))
    parts = sum(times[k] for k in ("preprocess", "backbone", "heads", "postprocess"))
    assert 0 < parts <= times["total"] * 1.001 + 1e-4


def test_unknown_peer_is_an_error():
    with pytest.raises(SystemExit):
        cli(["bench", "model", "--preset", "shapes-tiny", "--vs-torchvision", "detr"])
