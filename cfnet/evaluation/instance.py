"""Mask AP of the instance branch, computed by pycocotools (``COCOeval(iouType="segm")``).

Masks are RLE-encoded as they arrive, so accumulating a whole split costs little memory. Ground
truth is the thing instances of the panoptic annotation: non-crowd ones are the objects to find;
crowd regions are passed as ``iscrowd=1`` so that detections inside them are ignored, exactly as in
COCO's instance evaluation. Labels are contiguous thing ids (``0 .. T-1``, the instance branch's
classes); they are mapped back to dataset category ids for pycocotools.

Edge cases: an image with no prediction adds only misses; an image with no ground truth only false
positives; a split without a single prediction scores 0; a split without a single ground-truth
instance has no AP (NaN).
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def _masks_numpy(masks) -> np.ndarray:
    if hasattr(masks, "detach"):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    return masks.astype(bool)


def _vector(x, n: int, what: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x).reshape(-1)
    if x.shape[0] != n:
        raise ValueError(f"{what}: expected {n} entries (one per mask), got {x.shape[0]}")
    return x


def _encode(masks: np.ndarray) -> list[dict]:
    rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")  # JSON-safe, and what COCO.loadRes expects
    return rles


class MaskAPEvaluator:
    """Accumulate per-image instance predictions and ground truth, then ``compute()`` mask AP."""

    def __init__(self, categories):
        self.categories = categories
        self.reset()

    def reset(self) -> None:
        self._images: list[dict] = []
        self._gt: list[dict] = []
        self._dt: list[dict] = []
        self._ids: dict = {}

    def update(
        self,
        image_id,
        pred_masks,
        pred_labels,
        pred_scores,
        gt_masks,
        gt_labels,
        gt_crowd_masks=None,
        gt_crowd_labels=None,
    ) -> None:
        """Add one image. Masks are (N, H, W) bool (tensor or array), all at the same size;
        labels contiguous thing ids; ``gt_crowd_*`` the crowd regions (the dataset target's
        ``crowd_masks`` / ``crowd_labels``)."""
        if image_id in self._ids:
            raise ValueError(f"MaskAPEvaluator.update: image {image_id!r} added twice")
        gt_masks = _masks_numpy(gt_masks)
        pred_masks = _masks_numpy(pred_masks)
        h, w = gt_masks.shape[1:]
        if pred_masks.shape[1:] != (h, w):
            raise ValueError(
                f"image {image_id!r}: predicted masks are {pred_masks.shape[1:]}, ground truth {(h, w)}"
            )
        idx = len(self._images) + 1  # pycocotools wants integer image ids: map to our own
        self._ids[image_id] = idx
        self._images.append({"id": idx, "height": h, "width": w})

        def add_gt(masks: np.ndarray, labels, crowd: int) -> None:
            labels = _vector(labels, len(masks), f"image {image_id!r}: gt labels")
            for rle, lab in zip(_encode(masks) if len(masks) else [], labels):
                self._gt.append(
                    {
                        "id": len(self._gt) + 1,
                        "image_id": idx,
                        "category_id": self._category_id(lab, image_id),
                        "segmentation": rle,
                        "area": float(mask_util.area(rle)),
                        "bbox": list(mask_util.toBbox(rle)),
                        "iscrowd": crowd,
                    }
                )

        add_gt(gt_masks, gt_labels, 0)
        if gt_crowd_masks is not None:
            crowd = _masks_numpy(gt_crowd_masks)
            if crowd.shape[1:] != (h, w):
                raise ValueError(
                    f"image {image_id!r}: crowd masks are {crowd.shape[1:]}, ground truth {(h, w)}"
                )
            add_gt(crowd, gt_crowd_labels if gt_crowd_labels is not None else [], 1)

        labels = _vector(pred_labels, len(pred_masks), f"image {image_id!r}: pred labels")
        scores = _vector(pred_scores, len(pred_masks), f"image {image_id!r}: pred scores")
        for rle, lab, sc in zip(_encode(pred_masks) if len(pred_masks) else [], labels, scores):
            self._dt.append(
                {
                    "image_id": idx,
                    "category_id": self._category_id(lab, image_id),
                    "segmentation": rle,
                    "score": float(sc),
                }
            )

    def _category_id(self, label, image_id) -> int:
        label = int(label)
        if not 0 <= label < self.categories.num_things:
            raise ValueError(
                f"image {image_id!r}: instance label {label} is not a thing class "
                f"(0..{self.categories.num_things - 1})"
            )
        return self.categories.category_id(label)

    def compute(self) -> dict[str, float]:
        """``{"mask_AP", "mask_AP50", "mask_AP75", "mask_APs", "mask_APm", "mask_APl"}`` in percent
        (COCO's definitions; NaN where undefined)."""
        keys = ("mask_AP", "mask_AP50", "mask_AP75", "mask_APs", "mask_APm", "mask_APl")
        if not any(not g["iscrowd"] for g in self._gt):
            return {k: math.nan for k in keys}
        if not self._dt:
            return {k: 0.0 for k in keys}
        cats = [{"id": r["id"], "name": r["name"]} for r in self.categories.things]
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and tables
            gt = COCO()
            gt.dataset = {"images": self._images, "annotations": self._gt, "categories": cats}
            gt.createIndex()
            dt = gt.loadRes([dict(d) for d in self._dt])
            ev = COCOeval(gt, dt, iouType="segm")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = ev.stats[:6]
        return {k: (100.0 * float(v) if v >= 0 else math.nan) for k, v in zip(keys, stats)}
