"""The post-processing as it was before the speed-ups of the ``perf`` branch, verbatim.

The tests compare the current implementations against these copies bit for bit (``torch.equal``),
on random inputs and on real model outputs; do not "fix" or speed up anything here.
"""
# ruff: noqa

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cfnet.categories import IGNORE_INDEX
from cfnet.heads.instance import MASK_STRIDE, dynamic_conv, point_nms
from cfnet.matrix_nms import KERNELS, mask_iou_matrix


# ---------------------------------------------------------------- cfnet/transform.py
def postprocess_map(
    x: Tensor,
    padded_size: tuple[int, int],
    image_size: tuple[int, int],
    original_size: tuple[int, int],
) -> Tensor:
    """Map a dense (C, h', w') prediction of one image back to its original resolution.

    ``x`` covers the whole padded batch extent ``padded_size`` at some stride; it is upsampled
    bilinearly to ``padded_size``, cropped to the image's resized ``image_size`` and resized to
    ``original_size``. Returns (C, H, W).
    """
    hp, wp = padded_size
    h, w = image_size
    if tuple(x.shape[-2:]) != (hp, wp):
        sy, sx = hp // x.shape[-2], wp // x.shape[-1]
        if sy * x.shape[-2] != hp or sx * x.shape[-1] != wp:
            raise ValueError(
                f"postprocess_map: map {tuple(x.shape[-2:])} is not a stride of {padded_size}"
            )
        # Upsampling only the rows/columns the crop needs (one extra for the bilinear
        # neighbour) gives exactly the full upsample-then-crop, at a fraction of the cost.
        rows = min(x.shape[-2], -(-h // sy) + 1)
        cols = min(x.shape[-1], -(-w // sx) + 1)
        x = F.interpolate(
            x[None, :, :rows, :cols], size=(rows * sy, cols * sx), mode="bilinear", align_corners=False
        )[0]
    x = x[:, :h, :w]
    if (h, w) != tuple(original_size):
        x = F.interpolate(x[None], size=tuple(original_size), mode="bilinear", align_corners=False)[0]
    return x


# ---------------------------------------------------------------- cfnet/matrix_nms.py
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
    iou = mask_iou_matrix(masks.bool(), mask_area, dtype)
    same = labels[:, None] == labels[None, :]
    # decay_iou[i, j] = IoU(i, j) for i < j with the same label, else 0 (upper triangle)
    decay_iou = (iou * same).triu(diagonal=1)
    # comp[i] = max IoU of mask i with a higher-scored mask of its class (column-wise max)
    comp = decay_iou.max(dim=0).values
    if kernel == "gaussian":
        # exp(−σ iou²) / exp(−σ comp²) = exp(−σ (iou² − comp²)); one exp, no 0/0 risk
        ratio = torch.exp(-sigma * (decay_iou**2 - comp[:, None] ** 2))
    else:
        ratio = (1 - decay_iou) / (1 - comp[:, None]).clamp(min=1e-6)
    decay = ratio.min(dim=0).values  # includes row 0: f(d_0j)/f(0) ≤ 1
    return scores * decay.to(scores.dtype)


# ---------------------------------------------------------------- cfnet/panoptic_fusion.py
def _check(masks, labels, scores, semantic, num_things, semantic_probs) -> None:
    if semantic.dim() != 2:
        raise ValueError(f"panoptic_fusion: semantic must be (H, W), got shape {tuple(semantic.shape)}")
    h, w = semantic.shape
    if masks.dim() != 3 or masks.shape[1:] != (h, w):
        raise ValueError(
            f"panoptic_fusion: instance_masks must be (K, {h}, {w}) to match semantic, "
            f"got {tuple(masks.shape)}"
        )
    k = masks.shape[0]
    if labels.shape != (k,) or scores.shape != (k,):
        raise ValueError(
            f"panoptic_fusion: instance_labels {tuple(labels.shape)} and instance_scores "
            f"{tuple(scores.shape)} must both be ({k},)"
        )
    if k and (int(labels.min()) < 0 or int(labels.max()) >= num_things):
        raise ValueError(
            f"panoptic_fusion: instance_labels must be thing ids in [0, num_things={num_things}), "
            f"got range [{int(labels.min())}, {int(labels.max())}]"
        )
    if semantic.numel() and int(semantic.min()) < 0:
        raise ValueError("panoptic_fusion: semantic holds negative class ids")
    if semantic_probs is not None:
        if semantic_probs.dim() != 3 or semantic_probs.shape[1:] != (h, w):
            raise ValueError(
                f"panoptic_fusion: semantic_probs must be (C, {h}, {w}), got {tuple(semantic_probs.shape)}"
            )
        c = semantic_probs.shape[0]
        bad = (semantic != IGNORE_INDEX) & (semantic >= c)
        if bool(bad.any()):
            raise ValueError(
                f"panoptic_fusion: semantic holds class ids >= C = {c} (the semantic_probs channels)"
            )


def _span(flags: list[bool]) -> tuple[int, int]:
    """[first, last + 1) of the True entries (0, 0 when none)."""
    if True not in flags:
        return 0, 0
    return flags.index(True), len(flags) - flags[::-1].index(True)


def panoptic_fusion(
    instance_masks: Tensor,
    instance_labels: Tensor,
    instance_scores: Tensor,
    semantic: Tensor,
    *,
    num_things: int,
    overlap_thr: float = 0.5,
    stuff_area: int = 4096,
    score_thr: float = 0.0,
    semantic_probs: Tensor | None = None,
) -> tuple[Tensor, list[dict]]:
    """Merge instances and the semantic argmax into a panoptic segmentation (module docstring).

    Args:
        instance_masks: (K, H, W) bool masks at the output resolution.
        instance_labels: (K,) long contiguous thing ids in ``[0, num_things)``.
        instance_scores: (K,) scores (after Matrix NMS); any order.
        semantic: (H, W) long contiguous argmax over all classes.
        num_things: T; ids ``≥ T`` of ``semantic`` are stuff.
        overlap_thr: drop an instance whose visible part is under this fraction of its mask.
        stuff_area: minimum pixel count of a stuff segment (4096 at COCO scale; scale it down for
            small images).
        score_thr: instances scoring below this are skipped.
        semantic_probs: optional (C, H, W) softmax of the semantic branch, for stuff scores.

    Returns:
        ``(panoptic, segments_info)``: an (H, W) int64 map of segment ids (0 = void) and one dict
        per segment ``{"id", "label", "isthing", "score", "area"}`` in id order.
    """
    _check(instance_masks, instance_labels, instance_scores, semantic, num_things, semantic_probs)
    device = semantic.device
    panoptic = torch.zeros(semantic.shape, dtype=torch.int64, device=device)
    segments: list[dict] = []

    masks = instance_masks.to(device=device, dtype=torch.bool)
    # areas and bounding boxes in two passes over all masks; each instance then only touches
    # its own box (an image holds up to max_per_img instances)
    row_count, col_count = masks.sum(2), masks.sum(1)
    mask_area = row_count.sum(1).tolist()
    boxes = [_span(r) + _span(c) for r, c in zip((row_count > 0).tolist(), (col_count > 0).tolist())]
    occupied = torch.zeros(semantic.shape, dtype=torch.bool, device=device)
    scores = instance_scores.detach().to(device)
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    for k in order:
        score = float(scores[k])
        if score < score_thr:
            break  # sorted: every later one is lower
        area = mask_area[k]
        if area == 0:
            continue
        y0, y1, x0, x1 = boxes[k]
        occ = occupied[y0:y1, x0:x1]
        visible = masks[k, y0:y1, x0:x1] & ~occ
        n_visible = int(visible.sum())
        if n_visible == 0 or n_visible < overlap_thr * area:
            continue
        seg_id = len(segments) + 1
        panoptic[y0:y1, x0:x1].masked_fill_(visible, seg_id)
        occ |= visible  # a view: updates `occupied`
        label = int(instance_labels[k])
        segments.append({"id": seg_id, "label": label, "isthing": True, "score": score, "area": n_visible})

    # stuff: per-class areas of the free pixels by one bincount, then one lookup-table pass that
    # paints every kept class at once (no per-class full-image masks)
    paint = ~occupied & (semantic != IGNORE_INDEX)
    free_classes = semantic[paint].long()
    if free_classes.numel() == 0:
        return panoptic, segments
    counts = torch.bincount(free_classes).tolist()
    prob_sums = None
    if semantic_probs is not None:
        # the probability of each free pixel's own (argmax) class, summed per class
        index = semantic.long().clamp(max=semantic_probs.shape[0] - 1)[None]
        own_prob = semantic_probs.to(device).gather(0, index)[0][paint].double()
        prob_sums = torch.bincount(free_classes, weights=own_prob, minlength=len(counts)).tolist()
    lut = torch.zeros(len(counts), dtype=torch.int64, device=device)
    for c, area in enumerate(counts):
        if c < num_things or area == 0 or area < stuff_area:
            continue
        seg_id = len(segments) + 1
        lut[c] = seg_id
        score = 1.0 if prob_sums is None else prob_sums[c] / area
        segments.append({"id": seg_id, "label": c, "isthing": False, "score": score, "area": area})
    panoptic[paint] = lut[free_classes]
    return panoptic, segments


# ---------------------------------------------------------------- cfnet/heads/instance.py
@torch.no_grad()
def predict(
    self,  # a SOLOv2InstanceHead
    cate_preds: Sequence[Tensor],
    kernel_preds: Sequence[Tensor],
    mask_features: Tensor,
    index: int,
    image_size: tuple[int, int],
    original_size: tuple[int, int],
) -> dict[str, Tensor]:
    """Instances of image ``index`` of the batch at its ``original_size`` (see module docstring).

    Returns ``masks`` (K, H, W) bool, ``labels`` (K,) long (contiguous thing ids), ``scores``
    (K,) float, sorted by score.
    """
    device = mask_features.device
    scores = torch.cat(
        [
            point_nms(c[index : index + 1].float().sigmoid())[0]
            .permute(1, 2, 0)
            .reshape(-1, self.num_things)
            for c in cate_preds
        ]
    )
    kernels = torch.cat(
        [k[index].permute(1, 2, 0).reshape(-1, self.kernel_channels) for k in kernel_preds]
    )
    cell_strides = torch.cat(
        [torch.full((g * g,), float(s), device=device) for g, s in zip(self.num_grids, self.strides)]
    )
    height, width = original_size
    empty = {
        "masks": torch.zeros(0, height, width, dtype=torch.bool, device=device),
        "labels": torch.zeros(0, dtype=torch.long, device=device),
        "scores": torch.zeros(0, device=device),
    }
    cells, labels = torch.nonzero(scores > self.score_thr, as_tuple=True)
    if cells.numel() == 0:
        return empty
    cate_scores = scores[cells, labels]
    # Masks only over the image's own extent at stride 4 (not the batch padding).
    hc, wc = -(-image_size[0] // MASK_STRIDE), -(-image_size[1] // MASK_STRIDE)
    feats = mask_features[index][:, :hc, :wc]
    probs = dynamic_conv(kernels[cells], feats).float().sigmoid()
    masks = probs > self.mask_thr
    area = masks.sum((1, 2)).float()
    keep = area > self.min_mask_area_ratio * cell_strides[cells]
    if not keep.any():
        return empty
    probs, masks, area = probs[keep], masks[keep], area[keep]
    cate_scores, labels = cate_scores[keep], labels[keep]
    maskness = (probs * masks).sum((1, 2)) / area
    cate_scores = cate_scores * maskness
    order = torch.argsort(cate_scores, descending=True)[: self.nms_pre]
    probs, masks, area = probs[order], masks[order], area[order]
    cate_scores, labels = cate_scores[order], labels[order]
    cate_scores = matrix_nms(
        masks, labels, cate_scores, kernel=self.nms_kernel, sigma=self.nms_sigma, mask_area=area
    )
    keep = cate_scores >= self.update_thr
    if not keep.any():
        return empty
    probs, cate_scores, labels = probs[keep], cate_scores[keep], labels[keep]
    order = torch.argsort(cate_scores, descending=True)[: self.max_per_img]
    probs, cate_scores, labels = probs[order], cate_scores[order], labels[order]
    padded = (hc * MASK_STRIDE, wc * MASK_STRIDE)
    full = postprocess_map(probs, padded, image_size, original_size)
    return {"masks": full > self.mask_thr, "labels": labels, "scores": cate_scores}


# ---------------------------------------------------------------- cfnet/model.py
def postprocess(
    self,  # a CFNet
    sem_logits: Tensor,
    instance_out: tuple[list[Tensor], list[Tensor], Tensor],
    batch: object,
    original_sizes: Sequence[tuple[int, int]],
) -> list[dict]:
    """Per image: semantic probabilities, instances, and their panoptic fusion at input size."""
    cate_preds, kernel_preds, mask_features = instance_out
    padded = tuple(batch.tensors.shape[-2:])
    inf = self.cfg.model.inference
    results = []
    for b, (image_size, original) in enumerate(zip(batch.image_sizes, original_sizes)):
        logits = postprocess_map(sem_logits[b].float(), padded, image_size, original)
        probs = logits.softmax(0)
        semantic = probs.argmax(0)
        instances = self.instance_head.predict(
            cate_preds, kernel_preds, mask_features, b, image_size, original
        )
        panoptic, segments = panoptic_fusion(
            instances["masks"],
            instances["labels"],
            instances["scores"],
            semantic,
            num_things=self.categories.num_things,
            overlap_thr=inf.overlap_thr,
            stuff_area=inf.stuff_area,
            semantic_probs=probs,
        )
        segments_info = [
            {
                "id": int(s["id"]),
                "category_id": self.categories.category_id(int(s["label"])),
                "isthing": bool(s["isthing"]),
                "score": float(s["score"]),
                "area": int(s["area"]),
            }
            for s in segments
        ]
        results.append(
            {
                "panoptic_seg": panoptic,
                "segments_info": segments_info,
                "sem_seg": probs,
                "instances": instances,
            }
        )
    return results

