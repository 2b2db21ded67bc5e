"""Quality on the hard cases of instance discrimination: things that touch a thing of their class.

Two touching instances of one class look alike on both sides of their common border, so a model
that cannot tell *where* a pixel is tends to merge or swap them. PQ over all things dilutes this
failure with every isolated thing; this evaluator scores only the touching ones.

For every ground-truth thing that shares a pixel edge (4-neighbourhood) with another ground-truth
thing of the same category, the match is the predicted panoptic segment of that category with
IoU > 0.5 (unique, as in PQ). Over all such things of the split:

* ``touch_recall`` = matched / all touching things (percent),
* ``touch_SQ`` = mean IoU of the matched ones (percent),
* ``PQ_touch`` = Σ IoU of matches / all touching things = ``touch_SQ × touch_recall`` (percent).

There is no false-positive term: a prediction is not "about" a touching thing unless it matches
it, so ``PQ_touch`` is a recall-weighted quality, not PQ restricted to a subset.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["TouchingThingsEvaluator", "touching_same_class"]


def touching_same_class(masks: Tensor, labels: Tensor) -> Tensor:
    """``(K,)`` bool: does thing k share a pixel edge with another thing of its label?

    ``masks`` (K, H, W) bool, disjoint (panoptic ground truth); ``labels`` (K,).
    """
    k = masks.shape[0]
    if k < 2:
        return torch.zeros(k, dtype=torch.bool)
    m = masks.bool()
    grown = m.clone()  # each mask dilated by one pixel in the 4-neighbourhood
    grown[:, 1:, :] |= m[:, :-1, :]
    grown[:, :-1, :] |= m[:, 1:, :]
    grown[:, :, 1:] |= m[:, :, :-1]
    grown[:, :, :-1] |= m[:, :, 1:]
    contact = (grown.flatten(1).float() @ m.flatten(1).float().T) > 0  # (K, K)
    contact.fill_diagonal_(False)
    same = labels[:, None] == labels[None, :]
    return (contact & same).any(1)


class TouchingThingsEvaluator:
    """Accumulate ``update(panoptic_seg, segments_info, gt_masks, gt_labels)``, then ``compute()``.

    ``gt_labels`` and the predicted segments' ``category_id`` must use the same ids (the caller
    maps contiguous ids to dataset ids).
    """

    def __init__(self) -> None:
        self.total = 0
        self.matched = 0
        self.iou_sum = 0.0

    def update(
        self, panoptic_seg: Tensor, segments_info: list[dict], gt_masks: Tensor, gt_category_ids: Tensor
    ) -> None:
        touching = touching_same_class(gt_masks, gt_category_ids)
        if not touching.any():
            return
        seg = panoptic_seg.long().flatten()
        # Areas and per-thing overlaps of all predicted segments by bincount: one pass per thing,
        # not one full-image comparison per (thing, segment) pair.
        size = max([int(seg.max())] + [int(s["id"]) for s in segments_info]) + 1
        pred_area = torch.bincount(seg, minlength=size)
        pred_cat = torch.full((size,), -1, dtype=torch.long)
        for s in segments_info:
            if s.get("isthing"):
                pred_cat[int(s["id"])] = int(s["category_id"])
        for k in torch.nonzero(touching).flatten().tolist():
            self.total += 1
            gt = gt_masks[k].flatten().bool()
            inter = torch.bincount(seg[gt], minlength=size)
            union = pred_area + int(gt.sum()) - inter
            same = (pred_cat == int(gt_category_ids[k])) & (inter > 0)
            iou = torch.where(same, inter.double() / union.clamp(min=1).double(), torch.zeros(size).double())
            best = float(iou.max())
            if best > 0.5:  # IoU > 0.5 makes the match unique, as in PQ
                self.matched += 1
                self.iou_sum += best

    def compute(self) -> dict[str, float | int | None]:
        if self.total == 0:
            return {"PQ_touch": None, "touch_SQ": None, "touch_recall": None, "touch_things": 0}
        return {
            "PQ_touch": 100.0 * self.iou_sum / self.total,
            "touch_SQ": 100.0 * self.iou_sum / self.matched if self.matched else 0.0,
            "touch_recall": 100.0 * self.matched / self.total,
            "touch_things": self.total,
        }
