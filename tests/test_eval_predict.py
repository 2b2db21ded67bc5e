"""cfnet.engine.evaluate / predict end to end on a freshly initialised tiny model.

An untrained model predicts little, so the numbers are not checked for quality, only for being
there, in range and consistent with the files written.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import TINY_MODEL

from cfnet.checkpoint import save_checkpoint
from cfnet.cli import main as cli
from cfnet.config import get_config
from cfnet.data import PanopticDataset, generate_shapes
from cfnet.engine.evaluate import METRIC_KEYS, evaluate, format_table
from cfnet.engine.predict import predict_images
from cfnet.model import build_model
from cfnet.panoptic_io import check_segments, read_panoptic_png

TINY = [
    *TINY_MODEL,
    # an untrained model's scores are ~ the 0.01 prior: let some instances through anyway
    "model.inference.score_thr=0.001",
    "model.inference.update_thr=0.001",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evp")
    generate_shapes(root / "data", num_train=0, num_val=3, size=64, seed=1, progress=False)
    torch.manual_seed(0)
    cfg = get_config("shapes-tiny", TINY)
    model = build_model(cfg).eval()
    ckpt = save_checkpoint(root / "model.pt", model=model, cfg=cfg)
    return root, model, ckpt


def _check_metrics(metrics):
    for k in METRIC_KEYS:
        assert k in metrics, k
        v = metrics[k]
        assert v is None or math.isnan(v) or 0.0 <= v <= 100.0, (k, v)


def test_evaluate_function_writes_predictions_and_metrics(setup, tmp_path):
    root, model, _ = setup
    model.train()
    metrics = evaluate(model, root / "data" / "val", tmp_path / "ev", progress=False)
    assert model.training  # mode restored for the trainer
    _check_metrics(metrics)
    assert metrics["num_images"] == 3
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["num_images"] == 3
    pred = json.loads((tmp_path / "ev" / "panoptic.json").read_text())
    gt = PanopticDataset(root / "data" / "val")
    assert {a["image_id"] for a in pred["annotations"]} == {gt.image_info(i)["id"] for i in range(3)}
    for a in pred["annotations"]:
        ids = read_panoptic_png(tmp_path / "ev" / "panoptic" / a["file_name"])
        assert ids.shape == (64, 64)
        check_segments(ids, a["segments_info"], a["file_name"])
    assert "panoptic" in json.loads((tmp_path / "ev" / "per_class.json").read_text())
    table = format_table(metrics)
    assert "PQ" in table and "mIoU" in table and "mask AP" in table


def test_eval_cli_json(setup, tmp_path, capsys):
    root, _, ckpt = setup
    out_json = tmp_path / "m" / "metrics.json"
    args = ["eval", "--checkpoint", str(ckpt), "--data", str(root / "data" / "val"), "--out",
            str(tmp_path / "ev"), "--json", str(out_json), "--device", "cpu", "--no-progress"]  # fmt: skip
    assert cli(args) == 0
    metrics = json.loads(out_json.read_text())
    _check_metrics(metrics)
    assert "things" in capsys.readouterr().out
    # a bad checkpoint: clear error naming the file, exit code 2
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk" * 100)
    assert cli(args[:2] + [str(bad)] + args[3:]) == 2
    assert str(bad) in capsys.readouterr().err


def test_predict_cli_writes_pngs_overlays_and_valid_json(setup, tmp_path):
    root, model, ckpt = setup
    images = sorted((root / "data" / "val" / "images").iterdir())[:2]
    out = tmp_path / "pred"
    args = ["predict", "--checkpoint", str(ckpt), *map(str, images), "--out", str(out), "--no-progress"]
    assert cli(args) == 0
    data = json.loads((out / "predictions.json").read_text())
    assert set(data) >= {"images", "annotations", "categories"}
    assert data["categories"] == model.categories.to_json()
    assert [a["image_id"] for a in data["annotations"]] == [p.stem for p in images]
    cat_ids = {c["id"] for c in data["categories"]}
    for a, p in zip(data["annotations"], images):
        ids = read_panoptic_png(out / "panoptic" / a["file_name"])
        assert ids.shape == (64, 64)
        areas = check_segments(ids, a["segments_info"], a["file_name"])
        for s in a["segments_info"]:
            assert s["category_id"] in cat_ids and s["area"] == areas[s["id"]] and len(s["bbox"]) == 4
        overlay = np.asarray(Image.open(out / "overlay" / f"{p.stem}.png"))
        assert overlay.shape == (64, 64, 3)
    # The function gives the same predictions as the command.
    again = predict_images(model, images, tmp_path / "again", progress=False, overlays=False)
    assert again["annotations"] == data["annotations"]
    assert not (tmp_path / "again" / "overlay").exists()


def test_predict_corrupt_or_missing_image_names_the_file(setup, tmp_path, capsys):
    _, _, ckpt = setup
    bad = tmp_path / "broken.png"
    good = sorted((setup[0] / "data" / "val" / "images").iterdir())[0]
    bad.write_bytes(good.read_bytes()[:60])  # a truncated PNG
    out = tmp_path / "pred"
    assert cli(["predict", "--checkpoint", str(ckpt), str(good), str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err
    assert not (out / "predictions.json").exists()  # nothing half-written
    assert cli(["predict", "--checkpoint", str(ckpt), str(tmp_path / "nope.jpg"), "--out", str(out)]) == 2
    assert "nope.jpg" in capsys.readouterr().err
