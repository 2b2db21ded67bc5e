"""Touching same-class things (cfnet.evaluation.touching) and the stuff confusion of evaluate."""

from __future__ import annotations

import pytest
import torch

from cfnet.categories import Categories
from cfnet.engine.evaluate import stuff_confusion
from cfnet.evaluation.touching import TouchingThingsEvaluator, touching_same_class


def _boxes(*boxes, size=12):
    masks = torch.zeros(len(boxes), size, size, dtype=torch.bool)
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        masks[k, y0:y1, x0:x1] = True
    return masks


def test_touching_needs_a_shared_edge_and_the_same_class():
    # 0 and 1 share an edge; 2 touches 1 only at a corner; 3 touches 0 but has another class
    masks = _boxes((0, 4, 0, 4), (0, 4, 4, 8), (4, 8, 8, 12), (4, 8, 0, 4))
    labels = torch.tensor([1, 1, 1, 2])
    assert touching_same_class(masks, labels).tolist() == [True, True, False, False]
    assert touching_same_class(masks[:1], labels[:1]).tolist() == [False]


def _pred(size=12, **segments):
    seg = torch.zeros(size, size, dtype=torch.long)
    info = []
    for i, (name, (box, cat)) in enumerate(segments.items(), 1):
        y0, y1, x0, x1 = box
        seg[y0:y1, x0:x1] = i
        info.append({"id": i, "category_id": cat, "isthing": True, "name": name})
    return seg, info


def test_merged_pair_scores_zero_and_separated_pair_scores_full():
    gt = _boxes((0, 4, 0, 4), (0, 4, 4, 8))
    cats = torch.tensor([1, 1])
    merged = TouchingThingsEvaluator()
    merged.update(*_pred(a=((0, 4, 0, 8), 1)), gt, cats)  # one segment over both: IoU 0.5, not > 0.5
    assert merged.compute() == {"PQ_touch": 0.0, "touch_SQ": 0.0, "touch_recall": 0.0, "touch_things": 2}
    split = TouchingThingsEvaluator()
    split.update(*_pred(a=((0, 4, 0, 4), 1), b=((0, 4, 4, 8), 1)), gt, cats)
    assert split.compute() == {"PQ_touch": 100.0, "touch_SQ": 100.0, "touch_recall": 100.0, "touch_things": 2}


def test_partial_match_and_wrong_class():
    gt = _boxes((0, 4, 0, 4), (0, 4, 4, 8))
    cats = torch.tensor([1, 1])
    ev = TouchingThingsEvaluator()
    # first: 12 of 16 pixels (IoU 0.75); second: right place, wrong class
    ev.update(*_pred(a=((0, 3, 0, 4), 1), b=((0, 4, 4, 8), 2)), gt, cats)
    got = ev.compute()
    assert got["touch_things"] == 2 and got["touch_recall"] == 50.0
    assert got["touch_SQ"] == pytest.approx(75.0) and got["PQ_touch"] == pytest.approx(37.5)
    assert TouchingThingsEvaluator().compute()["PQ_touch"] is None  # no touching things at all


def test_stuff_confusion_rows_are_percent_of_ground_truth():
    cats = Categories(
        [
            {"id": 1, "name": "thing", "isthing": 1},
            {"id": 4, "name": "a", "isthing": 0},
            {"id": 5, "name": "b", "isthing": 0},
        ]
    )
    # rows: gt classes (thing, a, b); columns: predicted (thing, a, b, ignore)
    conf = torch.tensor([[5, 0, 0, 0], [1, 6, 2, 1], [0, 3, 1, 0]])
    got = stuff_confusion(conf, cats)
    assert got == {
        "a": {"a": 60.0, "b": 20.0, "thing": 10.0, "void": 10.0},
        "b": {"a": 75.0, "b": 25.0, "thing": 0.0, "void": 0.0},
    }


def _loop_reference(panoptic_seg, segments_info, gt_masks, cats):
    """The definition written out: for each touching thing, the best same-class IoU over segments."""
    total = matched = 0
    iou_sum = 0.0
    for k in torch.nonzero(touching_same_class(gt_masks, cats)).flatten().tolist():
        total += 1
        best = 0.0
        for s in segments_info:
            if s["isthing"] and s["category_id"] == int(cats[k]):
                pred = panoptic_seg == s["id"]
                inter = int((pred & gt_masks[k]).sum())
                if inter:
                    best = max(best, inter / int((pred | gt_masks[k]).sum()))
        if best > 0.5:
            matched += 1
            iou_sum += best
    return total, matched, iou_sum


@pytest.mark.parametrize("seed", range(5))
def test_evaluator_matches_the_loop_definition_on_random_scenes(seed):
    gen = torch.Generator().manual_seed(seed)
    size = 24
    gt_ids = torch.randint(0, 6, (size // 4, size // 4), generator=gen).repeat_interleave(4, 0)
    gt_ids = gt_ids.repeat_interleave(4, 1)  # blocky ground truth: touching things of few classes
    masks = torch.stack([gt_ids == i for i in range(1, 6)])
    cats = torch.randint(1, 3, (5,), generator=gen)
    pred = gt_ids.clone()
    pred[torch.rand(size, size, generator=gen) < 0.3] = 7  # a noisy prediction
    info = [{"id": i, "category_id": int(torch.randint(1, 3, (1,), generator=gen)), "isthing": True}
            for i in range(1, 8)]  # fmt: skip
    info.append({"id": 9, "category_id": 1, "isthing": True})  # listed, but no pixel
    ev = TouchingThingsEvaluator()
    ev.update(pred, info, masks, cats)
    total, matched, iou_sum = _loop_reference(pred, info, masks, cats)
    assert (ev.total, ev.matched) == (total, matched)
    assert ev.iou_sum == pytest.approx(iou_sum, rel=1e-12)
