"""Losses of Eq. 1: ``L = L_mask + L_cate + λ·L_sem``.

* ``L_mask``: SOLOv2's dice loss on the dynamic-conv masks of the positive grid cells
  (:func:`dice_loss`, weight 3 in SOLOv2 / the R50 preset).
* ``L_cate``: sigmoid focal loss (Lin et al. 2017) on the S×S category grids of every level
  (:func:`sigmoid_focal_loss`, α = 0.25, γ = 2). It returns the *sum*; the caller divides by
  ``num_pos + 1`` as SOLOv2 does (mmdetection's ``avg_factor=num_pos + 1``).
* ``L_sem``: per-pixel cross-entropy of the semantic branch over all ``T + S`` contiguous classes,
  void / crowd pixels carrying the ignore index 255 (:func:`semantic_loss`).

These are pure functions of tensors; the model (``cfnet.model``) gathers the predictions and
targets (``cfnet.targets``) and applies the weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cfnet.categories import IGNORE_INDEX


def dice_loss(probs: Tensor, targets: Tensor, eps: float = 1e-3) -> Tensor:
    """SOLOv2's dice loss per instance: ``1 − 2Σpt / ((Σp² + eps) + (Σt² + eps))``.

    Args:
        probs: (K, H, W) mask probabilities in [0, 1] (sigmoid of the dynamic-conv output).
        targets: (K, H, W) mask targets in [0, 1] (hard 0/1 or soft, see ``cfnet.targets``).
        eps: added to each of the two squared sums, as in SOLOv2 (so an empty target and an
            empty prediction give a loss of 1, with no division by zero).

    Returns:
        (K,) loss per instance. With soft targets the loss is minimised exactly at ``p = t``
        (Σp² + Σt² ≥ 2Σpt with equality iff p = t, up to eps).
    """
    if probs.shape != targets.shape:
        raise ValueError(f"dice_loss: probs {tuple(probs.shape)} and targets {tuple(targets.shape)} differ")
    if probs.dim() != 3:
        raise ValueError(f"dice_loss: expected (K, H, W) tensors, got shape {tuple(probs.shape)}")
    p = probs.flatten(1)
    t = targets.flatten(1).to(p.dtype)
    a = (p * t).sum(1)
    b = (p * p).sum(1) + eps
    c = (t * t).sum(1) + eps
    return 1.0 - 2.0 * a / (b + c)


def sigmoid_focal_loss(logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Sigmoid focal loss (Lin et al. 2017), summed over all M·C elements.

    ``FL = −α_t (1 − p_t)^γ log p_t`` per (cell, class), with one-hot targets built from
    ``labels``: class ``c`` is positive where ``labels == c``; ``labels == C`` (the number of
    classes, i.e. ``logits.shape[1]``) is background and makes every class negative there.

    Args:
        logits: (M, C) category logits (before the sigmoid).
        labels: (M,) long in [0, C]; C = background.

    Returns:
        A scalar: the sum over all elements. Divide by ``num_pos + 1`` (SOLOv2's normalisation).
    """
    if logits.dim() != 2:
        raise ValueError(f"sigmoid_focal_loss: logits must be (M, C), got shape {tuple(logits.shape)}")
    m, c = logits.shape
    if labels.shape != (m,):
        raise ValueError(f"sigmoid_focal_loss: labels must be ({m},), got shape {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > c):
        raise ValueError(
            f"sigmoid_focal_loss: labels must lie in [0, {c}] ({c} = background), "
            f"got range [{int(labels.min())}, {int(labels.max())}]"
        )
    # one_hot over C + 1 classes, then drop the background column.
    targets = F.one_hot(labels.long(), c + 1)[:, :c].to(logits.dtype)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # stable −log p_t
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.sum()


def semantic_loss(logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Cross-entropy of the semantic branch, mean over the non-ignored pixels (``L_sem`` of Eq. 1).

    Args:
        logits: (B, C, H, W) logits over all contiguous classes (things then stuff).
        targets: (B, H, W) long contiguous ids, ``ignore_index`` for void / crowd.

    Returns:
        A scalar. When every pixel is ignored it is 0 but still connected to ``logits``
        (``logits.sum() * 0``), so a batch without labels does not break backward / DDP.
    """
    if logits.dim() != 4:
        raise ValueError(f"semantic_loss: logits must be (B, C, H, W), got shape {tuple(logits.shape)}")
    b, c, h, w = logits.shape
    if targets.shape != (b, h, w):
        raise ValueError(
            f"semantic_loss: targets must be {(b, h, w)} to match logits, got {tuple(targets.shape)}"
        )
    targets = targets.long()
    valid = targets != ignore_index
    n = int(valid.sum())
    if n == 0:
        return logits.sum() * 0.0
    bad = valid & ((targets < 0) | (targets >= c))
    if bool(bad.any()):
        raise ValueError(
            f"semantic_loss: targets hold ids outside [0, {c}) that are not ignore_index={ignore_index}: "
            f"{sorted(set(targets[bad].unique().tolist()))[:10]}"
        )
    return F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum") / n
