"""scripts/feature_scale.py: the backbone/FPN scale table used to explain the study's diverged runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from cfnet.checkpoint import load_checkpoint
from cfnet.data import generate_shapes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "feature_scale.py"


def _script():
    spec = importlib.util.spec_from_file_location("feature_scale", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_feature_scale_grows_with_an_amplified_fpn():
    script = _script()
    model, _, _ = load_checkpoint("default")
    images = [torch.rand(3, 64, 64) for _ in range(2)]
    scale = script.feature_scale(model, images)
    stages = ["body.layer1", "body.layer2", "body.layer3", "body.layer4"]
    assert list(scale) == [*stages, "p2", "p3", "p4", "p5", "p6"]
    assert all(0 < v < float("inf") for v in scale.values())
    with torch.no_grad():  # the FPN has no normalisation: scaling its output convs scales P2-P6
        for conv in model.backbone.fpn.layer_blocks:
            conv[0].weight.mul_(50)
            conv[0].bias.mul_(50)
    louder = script.feature_scale(model, images)
    assert louder["body.layer4"] == pytest.approx(scale["body.layer4"])
    assert louder["p2"] == pytest.approx(50 * scale["p2"], rel=1e-4)


def test_feature_scale_cli(tmp_path, capsys):
    split = generate_shapes(tmp_path, num_train=2, num_val=0, size=64, seed=3, progress=False)["train"]
    weights = Path(__file__).resolve().parents[1] / "cfnet" / "weights" / "shapes-tiny.pt"
    assert _script().main(["--data", str(split), "--images", "2", str(weights)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| run | body.layer1") and "| shapes-tiny |" in out
