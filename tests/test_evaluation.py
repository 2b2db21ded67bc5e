"""PQ (through panopticapi), mIoU and mask AP on hand-made cases and the real COCO sample."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import cfnet.evaluation.panoptic as pq_module
from cfnet.categories import Categories
from cfnet.data import PanopticDataset
from cfnet.evaluation import (
    PQ_KEYS,
    MaskAPEvaluator,
    SemanticEvaluator,
    panoptic_quality,
    panoptic_quality_details,
    write_panoptic_predictions,
)
from cfnet.panoptic_io import PanopticFormatError, dump_json, read_panoptic_png, write_panoptic_png

SAMPLE = Path(__file__).parent / "data" / "coco-panoptic-val2017-sample"


def _gt_as_predictions(coco: Categories) -> list[dict]:
    """The sample's ground truth in the model's output format (tensors, isthing, score)."""
    data = json.loads((SAMPLE / "panoptic.json").read_text())
    images = {im["id"]: im for im in data["images"]}
    preds = []
    for ann in data["annotations"]:
        ids = read_panoptic_png(SAMPLE / "panoptic" / ann["file_name"])
        info = [
            {
                "id": s["id"],
                "category_id": s["category_id"],
                "isthing": coco.is_thing(coco.contiguous(s["category_id"])),
                "score": 1.0,
                "area": s["area"],
            }
            for s in ann["segments_info"]
        ]
        preds.append(
            {
                "image_id": ann["image_id"],
                "file_name": images[ann["image_id"]]["file_name"],
                "panoptic_seg": torch.from_numpy(ids),
                "segments_info": info,
            }
        )
    return preds


# ----------------------------------------------------------------------------------------------
# PQ


def test_pq_of_ground_truth_is_100(tmp_path, coco):
    json_path, png_dir = write_panoptic_predictions(_gt_as_predictions(coco), tmp_path / "pred", coco)
    res = panoptic_quality(SAMPLE / "panoptic.json", SAMPLE / "panoptic", json_path, png_dir)
    assert set(res) == set(PQ_KEYS)
    for k in PQ_KEYS:
        assert res[k] == pytest.approx(100.0), k
    # the written JSON is COCO panoptic results: annotations with image_id, file_name, segments_info
    out = json.loads(json_path.read_text())
    assert {a["file_name"] for a in out["annotations"]} == {p.name for p in SAMPLE.glob("panoptic/*.png")}
    assert set(out["annotations"][0]) == {"image_id", "file_name", "segments_info"}


def test_pq_perturbed_prediction_and_per_class(tmp_path, coco):
    preds = _gt_as_predictions(coco)
    # relabel the two cats of image 39769 as dogs: 2 FN for cat, 2 FP for dog
    cat_seg = [s for s in preds[2]["segments_info"] if s["category_id"] == 17]
    assert preds[2]["image_id"] == 39769 and len(cat_seg) == 2
    for s in cat_seg:
        s["category_id"] = 18
    json_path, png_dir = write_panoptic_predictions(preds, tmp_path / "pred", coco)
    res, per_class = panoptic_quality_details(
        SAMPLE / "panoptic.json", SAMPLE / "panoptic", json_path, png_dir
    )
    assert per_class["cat"]["PQ"] == 0.0 and per_class["dog"]["PQ"] == 0.0
    assert per_class["person"]["PQ"] == pytest.approx(100.0)
    n_th = sum(1 for v in per_class.values() if v["isthing"])
    n_st = sum(1 for v in per_class.values() if not v["isthing"])
    assert res["PQ_th"] == pytest.approx(100.0 * (n_th - 2) / n_th)
    assert res["PQ_st"] == pytest.approx(100.0)
    assert res["PQ"] == pytest.approx(100.0 * (n_th + n_st - 2) / (n_th + n_st))


def _tiny_split(
    root: Path, maps: list[np.ndarray], infos: list[list[dict]], cats: list[dict]
) -> tuple[Path, Path]:
    anns, images = [], []
    for i, (m, info) in enumerate(zip(maps, infos)):
        info = [dict(s, area=int((m == s["id"]).sum())) for s in info]
        write_panoptic_png(root / "panoptic" / f"{i}.png", m)
        anns.append({"image_id": i, "file_name": f"{i}.png", "segments_info": info})
        images.append({"id": i, "file_name": f"{i}.jpg", "height": m.shape[0], "width": m.shape[1]})
    dump_json({"images": images, "annotations": anns, "categories": cats}, root / "panoptic.json")
    return root / "panoptic.json", root / "panoptic"


def test_pq_hand_made(tmp_path):
    cats = [{"id": 1, "name": "box", "isthing": 1}, {"id": 2, "name": "sky", "isthing": 0}]
    categories = Categories(cats)
    gt = np.full((10, 10), 2)
    gt[2:6, 2:6] = 1  # thing 16 px
    gt[0, :] = 0  # void row
    gt_json, gt_dir = _tiny_split(
        tmp_path / "gt",
        [gt],
        [[{"id": 1, "category_id": 1, "iscrowd": 0}, {"id": 2, "category_id": 2, "iscrowd": 0}]],
        cats,
    )
    pred = np.full((10, 10), 2)
    pred[2:6, 3:7] = 1  # shifted by one column: intersection 12, union 20
    pred[8:10, 8:10] = 3  # a small false thing, all on gt stuff
    pred_json, pred_dir = write_panoptic_predictions(
        [
            {
                "image_id": 0,
                "file_name": "0.jpg",
                "panoptic_seg": pred,
                "segments_info": [
                    {"id": 1, "category_id": 1, "isthing": True, "score": 0.9},
                    {"id": 2, "category_id": 2, "isthing": False, "score": 1.0},
                    {"id": 3, "category_id": 1, "isthing": True, "score": 0.5},
                    {"id": 4, "category_id": 2, "isthing": False, "score": 1.0},  # no pixels: dropped
                ],
            }
        ],
        tmp_path / "pred",
        categories,
    )
    res = panoptic_quality(gt_json, gt_dir, pred_json, pred_dir)
    # thing: TP IoU 12/20, 1 FP -> PQ = 0.6 / (1 + 0.5) ; SQ 0.6, RQ 2/3
    assert res["PQ_th"] == pytest.approx(100 * 0.6 / 1.5)
    assert res["SQ_th"] == pytest.approx(60.0)
    assert res["RQ_th"] == pytest.approx(100 * 2 / 3)
    # stuff: gt 90 - 16 = 74 px outside void; pred stuff 100 - 16 - 4 = 80 px, 10 of them on void
    # intersection = 74 - 4 (lost to the shifted box) - 4 (lost to the false box) = 66;
    # union = 80 + 74 - 66 - 10 (void) = 78
    assert res["PQ_st"] == pytest.approx(100 * 66 / 78)
    assert res["PQ"] == pytest.approx((res["PQ_th"] + res["PQ_st"]) / 2)


def test_pq_parallel_equals_serial(tmp_path, coco, monkeypatch):
    preds = _gt_as_predictions(coco)
    preds[0]["segments_info"][0]["category_id"] = 18
    json_path, png_dir = write_panoptic_predictions(preds, tmp_path / "pred", coco)
    serial = panoptic_quality(
        SAMPLE / "panoptic.json", SAMPLE / "panoptic", json_path, png_dir, num_workers=1
    )
    monkeypatch.setattr(pq_module, "IMAGES_PER_WORKER", 1)
    parallel = panoptic_quality(
        SAMPLE / "panoptic.json", SAMPLE / "panoptic", json_path, png_dir, num_workers=2
    )
    assert parallel == pytest.approx(serial)
    assert serial["PQ"] < 100.0


def test_pq_errors(tmp_path, coco):
    preds = _gt_as_predictions(coco)
    json_path, png_dir = write_panoptic_predictions(preds[:2], tmp_path / "pred", coco)
    with pytest.raises(ValueError, match=r"no prediction for image id 39769 \(000000039769.png\)"):
        panoptic_quality(SAMPLE / "panoptic.json", SAMPLE / "panoptic", json_path, png_dir)
    # a subset can be evaluated on purpose
    res = panoptic_quality(
        SAMPLE / "panoptic.json", SAMPLE / "panoptic", json_path, png_dir, image_ids=[142238, 439180]
    )
    assert res["PQ"] == pytest.approx(100.0)
    # a prediction at the wrong size
    small = dict(preds[0], panoptic_seg=preds[0]["panoptic_seg"][:-1])
    json_path, png_dir = write_panoptic_predictions([small] + preds[1:], tmp_path / "pred2", coco)
    with pytest.raises(
        PanopticFormatError, match=r"000000142238\.png: size 640x426 differs from the ground truth"
    ):
        panoptic_quality(SAMPLE / "panoptic.json", SAMPLE / "panoptic", json_path, png_dir)


def test_write_predictions_errors(tmp_path, coco):
    p = _gt_as_predictions(coco)[2]
    bad = dict(p, segments_info=p["segments_info"][1:])
    with pytest.raises(
        ValueError, match="image 39769: segment ids .* are in panoptic_seg but not in segments_info"
    ):
        write_panoptic_predictions([bad], tmp_path / "a", coco)
    bad = dict(p, segments_info=[dict(s, category_id=9999) for s in p["segments_info"]])
    with pytest.raises(ValueError, match="image 39769: segment .* unknown category id 9999"):
        write_panoptic_predictions([bad], tmp_path / "b", coco)


# ----------------------------------------------------------------------------------------------
# mIoU


def test_miou_hand_made_confusion():
    ev = SemanticEvaluator(4, ignore_index=255, class_names=["a", "b", "c", "d"])
    gt = torch.tensor([[0, 0, 0, 1], [1, 1, 255, 255]])
    pred = torch.tensor([[0, 0, 1, 1], [1, 0, 3, 255]])
    ev.update(pred, gt)
    ev.update(np.array([[2]]), np.array([[255]]))  # all ignored
    # class a: TP 2, FN 1, FP 1 -> 2/4 ; class b: TP 2, FN 1, FP 1 -> 2/4 ; c, d: absent from
    # the evaluated pixels (the 3 and the 255 predictions sit on ignored gt) -> excluded
    out = ev.compute()
    assert out["IoU"] == pytest.approx({"a": 50.0, "b": 50.0})
    assert out["mIoU"] == pytest.approx(50.0)
    assert out["pixel_accuracy"] == pytest.approx(100 * 4 / 6)
    expected = torch.zeros(4, 5, dtype=torch.int64)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[1, 0] = 2, 1, 2, 1
    assert torch.equal(ev.confusion, expected)


def test_miou_no_prediction_and_false_class():
    ev = SemanticEvaluator(3)
    ev.update(torch.tensor([255, 2, 2, 0]), torch.tensor([0, 0, 1, 0]))
    # a: TP 1, FN 2 -> 1/3 ; b: FN 1 -> 0 ; c: FP 2 -> 0
    out = ev.compute()
    assert out["IoU"] == pytest.approx({0: 100 / 3, 1: 0.0, 2: 0.0})
    assert out["mIoU"] == pytest.approx(100 / 9)
    with pytest.raises(ValueError, match="predicted classes"):
        ev.update(torch.tensor([7]), torch.tensor([0]))
    with pytest.raises(ValueError, match="gt classes"):
        ev.update(torch.tensor([0]), torch.tensor([5]))


# ----------------------------------------------------------------------------------------------
# mask AP


@pytest.fixture(scope="module")
def sample_targets(coco):
    ds = PanopticDataset(SAMPLE, categories=coco)
    return [ds[i][1] for i in range(len(ds))]


def _add(ev, t, masks, labels, scores, image_id=None):
    ev.update(
        t["image_id"] if image_id is None else image_id,
        masks,
        labels,
        scores,
        t["masks"],
        t["labels"],
        t["crowd_masks"],
        t["crowd_labels"],
    )


def test_mask_ap_ground_truth_is_100(coco, sample_targets):
    ev = MaskAPEvaluator(coco)
    for t in sample_targets:
        _add(ev, t, t["masks"], t["labels"], torch.ones(len(t["labels"])))
    # an image without ground truth and without predictions changes nothing
    empty = torch.zeros(0, 20, 30, dtype=torch.bool)
    ev.update("blank", empty, torch.zeros(0), torch.zeros(0), empty, torch.zeros(0))
    res = ev.compute()
    assert res["mask_AP"] == pytest.approx(100.0)
    assert res["mask_AP50"] == pytest.approx(100.0) and res["mask_AP75"] == pytest.approx(100.0)


def test_mask_ap_perturbed_is_lower(coco, sample_targets):
    ev = MaskAPEvaluator(coco)
    for t in sample_targets:
        masks = t["masks"].clone()
        masks[::2] = torch.roll(masks[::2], shifts=6, dims=2)  # shift every other instance by 6 px
        _add(ev, t, masks, t["labels"], torch.linspace(1, 0.5, len(masks)))
    res = ev.compute()
    assert 0.0 < res["mask_AP"] < 95.0
    assert res["mask_AP50"] >= res["mask_AP75"]


def test_mask_ap_crowd_and_empty_cases(coco, sample_targets):
    t = next(t for t in sample_targets if len(t["crowd_labels"]))
    # a detection covering only the crowd region is ignored, not a false positive
    ev = MaskAPEvaluator(coco)
    masks = torch.cat([t["masks"], t["crowd_masks"]])
    labels = torch.cat([t["labels"], t["crowd_labels"]])
    scores = torch.cat([torch.full((len(t["labels"]),), 0.5), torch.ones(len(t["crowd_labels"]))])
    _add(ev, t, masks, labels, scores)
    assert ev.compute()["mask_AP"] == pytest.approx(100.0)
    # no prediction at all -> 0 ; no ground truth at all -> undefined (NaN)
    ev = MaskAPEvaluator(coco)
    _add(ev, t, t["masks"][:0], t["labels"][:0], torch.zeros(0))
    assert ev.compute()["mask_AP"] == 0.0
    ev = MaskAPEvaluator(coco)
    empty = torch.zeros(0, 8, 8, dtype=torch.bool)
    ev.update(1, torch.ones(1, 8, 8, dtype=torch.bool), [0], [0.9], empty, [])
    assert math.isnan(ev.compute()["mask_AP"])
    with pytest.raises(ValueError, match="instance label 90 is not a thing class"):
        ev.update(2, torch.ones(1, 8, 8, dtype=torch.bool), [90], [0.9], empty, [])
