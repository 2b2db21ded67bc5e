"""Matrix NMS (SOLOv2, Wang et al. 2020, Sec. 4.2): soft, parallel, class-aware mask NMS.

For masks sorted by score, s_1 ≥ s_2 ≥ … ≥ s_N, with IoU(i, j) over same-label pairs only:

    comp_i  = max_{k < i, label_k = label_i} IoU(k, i)          (0 if there is none)
    decay_j = min( 1, min_{i < j, label_i = label_j} f(IoU(i, j)) / f(comp_i) )
    s'_j    = s_j · decay_j

with ``f(x) = exp(−σ x²)`` (Gaussian kernel, default σ = 2) or ``f(x) = 1 − x`` (linear).
``comp_i`` compensates for mask i having been suppressed itself: a mask that is probably a
duplicate decays the masks below it less. The matrix form (an upper-triangular IoU matrix,
column-wise max and min) computes the same numbers as the formula above: the extra entries of
the column-wise min, below the diagonal and for other labels, are ``f(0) / f(comp_i) ≥ 1``, and
the first row gives ``f(0) / f(0) = 1``; hence the ``min(1, ·)``.

Differences from the reference implementations (AdelaiDet ``matrix_nms``, mmdetection
``mask_matrix_nms``), written down on purpose:

* Input must already be sorted by score (descending; checked). mmdetection sorts inside and also
  applies ``nms_pre`` / ``filter_thr`` / ``max_num``; here those belong to the caller, so this
  function returns decayed scores aligned with its input.
* The linear kernel divides by ``max(1 − comp_i, 1e-6)``: the references divide by ``1 − comp_i``,
  which gives inf / NaN when two same-class masks are identical.
* A pair of empty masks has IoU 0 (the references compute 0/0 = NaN).
"""

from __future__ import annotations

import torch
from torch import Tensor

KERNELS = ("gaussian", "linear")


def mask_iou_matrix(
    masks: Tensor, mask_area: Tensor | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """(N, N) IoU of every pair of (N, H, W) binary masks.

    ``dtype`` is float32 or float64, never half: pixel counts overflow float16.
    """
    n = masks.shape[0]
    flat = masks.reshape(n, -1).to(dtype)
    inter = flat @ flat.T
    area = flat.sum(1) if mask_area is None else mask_area.to(dtype)
    union = area[:, None] + area[None, :] - inter
    # two empty masks: IoU 0, not NaN
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def _same_label_iou(masks: Tensor, labels: Tensor, mask_area: Tensor | None, dtype: torch.dtype) -> Tensor:
    """``mask_iou_matrix(masks) * (labels_i == labels_j)``, computing only the same-label blocks.

    Only same-label pairs decay, so the cross-label IoUs (all but about 1/L of the matrix with L
    labels present: the bulk of Matrix NMS's cost) are never needed. The result is bit-identical
    to the full product: the pixel counts are integers summed exactly in ``dtype`` in any order
    (below 2**24 in float32, 2**53 in float64, which the check guarantees; otherwise the full
    matrix is computed as before), and every other operation is elementwise.
    """
    n = masks.shape[0]
    pixels = masks[0].numel() if n else 0
    if pixels >= (2**24 if dtype == torch.float32 else 2**53) or n < 2:
        iou = mask_iou_matrix(masks, mask_area, dtype)
        return iou * (labels[:, None] == labels[None, :])
    flat = masks.reshape(n, -1)
    area = flat.sum(1).to(dtype) if mask_area is None else mask_area.to(dtype)
    out = torch.zeros(n, n, dtype=dtype, device=masks.device)
    unique, counts = torch.unique(labels, return_counts=True)
    for label in unique[counts > 1].tolist():
        idx = torch.nonzero(labels == label).squeeze(1)
        sub = flat[idx].to(dtype)
        inter = sub @ sub.T
        a = area[idx]
        union = a[:, None] + a[None, :] - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))
        out[idx[:, None], idx[None, :]] = iou
    return out


def matrix_nms(
    masks: Tensor,
    labels: Tensor,
    scores: Tensor,
    *,
    kernel: str = "gaussian",
    sigma: float = 2.0,
    mask_area: Tensor | None = None,
) -> Tensor:
    """Decayed scores of Matrix NMS (see the module docstring for the formula).

    Args:
        masks: (N, H, W) bool masks (thresholded mask probabilities), **sorted by score,
            descending** (the order decides who suppresses whom).
        labels: (N,) long class of each mask; only same-label pairs decay (class-aware).
        scores: (N,) scores, non-increasing.
        kernel: ``"gaussian"`` (``exp(−σ·iou²)``) or ``"linear"`` (``1 − iou``).
        sigma: σ of the Gaussian kernel (SOLOv2: 2.0); unused by the linear kernel.
        mask_area: optional (N,) precomputed ``masks.sum((1, 2))`` (SOLOv2 computes it anyway for
            its area filter).

    Returns:
        (N,) decayed scores, same order and dtype as ``scores``; empty for N = 0. The caller
        thresholds them (``update_thr``) and keeps the top ``max_per_img``.
    """
    if kernel not in KERNELS:
        raise ValueError(f"matrix_nms: kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if masks.dim() != 3:
        raise ValueError(f"matrix_nms: masks must be (N, H, W), got shape {tuple(masks.shape)}")
    n = masks.shape[0]
    if labels.shape != (n,) or scores.shape != (n,):
        raise ValueError(
            f"matrix_nms: labels {tuple(labels.shape)} and scores {tuple(scores.shape)} must both be ({n},)"
        )
    if mask_area is not None and mask_area.shape != (n,):
        raise ValueError(f"matrix_nms: mask_area must be ({n},), got {tuple(mask_area.shape)}")
    if n == 0:
        return scores.clone()
    if n > 1 and bool((scores[1:] > scores[:-1]).any()):
        raise ValueError(
            "matrix_nms: scores must be sorted in descending order (sort masks, labels and scores first)"
        )

    dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
    # decay_iou[i, j] = IoU(i, j) for i < j with the same label, else 0 (upper triangle).
    # Never under autocast: a half-precision matmul would round (fp16: overflow) the pixel counts.
    with torch.autocast(device_type=masks.device.type, enabled=False):
        decay_iou = _same_label_iou(masks.bool(), labels, mask_area, dtype).triu(diagonal=1)
    # comp[i] = max IoU of mask i with a higher-scored mask of its class (column-wise max)
    comp = decay_iou.max(dim=0).values
    if kernel == "gaussian":
        # exp(−σ iou²) / exp(−σ comp²) = exp(−σ (iou² − comp²)); one exp, no 0/0 risk
        ratio = torch.exp(-sigma * (decay_iou**2 - comp[:, None] ** 2))
    else:
        ratio = (1 - decay_iou) / (1 - comp[:, None]).clamp(min=1e-6)
    decay = ratio.min(dim=0).values  # includes row 0: f(d_0j)/f(0) ≤ 1
    return scores * decay.to(scores.dtype)
