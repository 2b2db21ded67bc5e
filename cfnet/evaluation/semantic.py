"""Mean IoU of the semantic branch, from a confusion matrix accumulated over images.

IoU_c = TP_c / (TP_c + FP_c + FN_c) over all pixels whose ground truth is not ``ignore_index``
(void and crowd, 255); mIoU averages it over the classes that occur in the ground truth or the
prediction of the evaluated pixels (a class absent from both has no IoU and is left out of the mean).
A prediction of ``ignore_index`` (no class) counts as a miss of the ground-truth class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class SemanticEvaluator:
    """Accumulate ``update(pred, gt)`` over images, then ``compute()``.

    ``confusion`` is a (C, C + 1) int64 tensor, rows = ground truth, columns = prediction (the last
    column counts pixels predicted as ``ignore_index``); sum it over processes for distributed
    evaluation.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: Sequence[str] | None = None):
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} entries for {num_classes} classes")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.class_names = list(class_names) if class_names is not None else None
        self.reset()

    def reset(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes + 1, dtype=torch.int64)

    def update(self, pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray) -> None:
        """Add one image: ``pred`` and ``gt`` (H, W) integer class maps of the same size."""
        pred = torch.as_tensor(pred).long().flatten().cpu()
        gt = torch.as_tensor(gt).long().flatten().cpu()
        if pred.shape != gt.shape:
            raise ValueError(f"SemanticEvaluator.update: pred has {pred.numel()} pixels, gt {gt.numel()}")
        n = self.num_classes
        valid = gt != self.ignore_index
        pred, gt = pred[valid], gt[valid]
        if gt.numel() and (gt.min() < 0 or gt.max() >= n):
            raise ValueError(
                f"SemanticEvaluator.update: gt classes must lie in [0, {n}) or be {self.ignore_index}"
            )
        pred = torch.where(pred == self.ignore_index, torch.full_like(pred, n), pred)
        if pred.numel() and (pred.min() < 0 or pred.max() > n):
            raise ValueError(
                f"SemanticEvaluator.update: predicted classes must lie in [0, {n}) or be {self.ignore_index}"
            )
        self.confusion += torch.bincount(gt * (n + 1) + pred, minlength=n * (n + 1)).view(n, n + 1)

    def compute(self) -> dict:
        """``{"mIoU": percent, "IoU": {class: percent}, "pixel_accuracy": percent}``; ``IoU`` lists
        the classes present in ground truth or prediction (keyed by name when names were given)."""
        conf = self.confusion.double()
        n = self.num_classes
        tp = conf.diagonal()  # (n,): the extra "ignore" column has no diagonal entry
        gt_total = conf.sum(1)  # TP + FN (FN includes "predicted nothing")
        pred_total = conf[:, :n].sum(0)  # TP + FP
        union = gt_total + pred_total - tp
        present = union > 0
        iou = torch.where(present, tp / union.clamp(min=1), torch.zeros_like(tp))
        keys = self.class_names or list(range(n))
        per_class = {keys[c]: 100.0 * float(iou[c]) for c in range(n) if present[c]}
        total = float(gt_total.sum())
        return {
            "mIoU": 100.0 * float(iou[present].mean()) if present.any() else 0.0,
            "IoU": per_class,
            "pixel_accuracy": 100.0 * float(tp.sum()) / total if total else 0.0,
        }
