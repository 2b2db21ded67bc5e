"""Panoptic fusion: Kirillov et al.'s heuristic (Panoptic Segmentation, CVPR 2019; DESIGN §4).

The instance branch (after Matrix NMS and thresholds) and the semantic argmax are merged into one
non-overlapping segmentation:

1. Instances in descending score order (stable: equal scores keep their input order; instances
   under ``score_thr`` are skipped). Each one paints only the still-free pixels of its mask and is
   dropped when that visible part is empty or less than ``overlap_thr`` of its own mask area.
2. Stuff: for each stuff class (contiguous id ``≥ num_things``) of the semantic argmax, in
   ascending id order, the still-free pixels of that class form one segment when there are at
   least ``stuff_area`` of them.
3. Everything else is void (0), including pixels whose semantic argmax is a *thing* class but
   that no kept instance covers: the instance branch, not the semantic one, decides things.

Segment ids are 1, 2, … in order of creation. Labels are contiguous ids (things ``0..T-1``, stuff
``T..T+S-1``, see ``cfnet.categories``); converting them to dataset ``category_id`` is the
caller's job.

Written-down differences from detectron2's ``combine_semantic_and_instance_outputs``:

* The overlap rule is stated on the *visible* fraction (keep when ``visible / area ≥
  overlap_thr``); detectron2 states it on the occluded fraction (drop when ``occluded / area >
  overlap_thr``). At the default 0.5 they agree, a boundary of exactly one half included.
* Only contiguous ids ``≥ num_things`` become stuff segments (detectron2's PanopticFPN merges all
  things into semantic class 0 instead); a value of 255 (the project's ignore index) stays void.
* Ties in score are broken by input order (a stable sort; ``torch.argsort`` is not stable).
* Each segment records its painted ``area``, and stuff segments a ``score`` (the mean semantic
  probability of that class over the segment, or 1.0 without probabilities).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cfnet.categories import IGNORE_INDEX


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
    semantic_score: Tensor | None = None,
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
        semantic_score: optional (H, W) ``semantic_probs`` at each pixel's ``semantic`` class
            (``probs.max(0).values`` when ``semantic`` is the argmax); saves a gather over the
            C×H×W map. Only used with ``semantic_probs``.

    Returns:
        ``(panoptic, segments_info)``: an (H, W) int64 map of segment ids (0 = void) and one dict
        per segment ``{"id", "label", "isthing", "score", "area"}`` in id order.
    """
    _check(instance_masks, instance_labels, instance_scores, semantic, num_things, semantic_probs)
    device = semantic.device
    panoptic = torch.zeros(semantic.shape, dtype=torch.int64, device=device)
    segments: list[dict] = []

    masks = instance_masks.to(device=device, dtype=torch.bool)
    # bounding boxes in two boolean passes over all masks (any() stops at the first pixel and
    # does not widen to int64 like sum()); each instance then only touches its own box (an image
    # holds up to max_per_img instances), its area included
    boxes = [_span(r) + _span(c) for r, c in zip(masks.any(2).tolist(), masks.any(1).tolist())]
    occupied = torch.zeros(semantic.shape, dtype=torch.bool, device=device)
    scores = instance_scores.detach().to(device)
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    for k in order:
        score = float(scores[k])
        if score < score_thr:
            break  # sorted: every later one is lower
        y0, y1, x0, x1 = boxes[k]
        if y1 == y0:
            continue  # empty mask
        mask = masks[k, y0:y1, x0:x1]
        area = int(torch.count_nonzero(mask))
        occ = occupied[y0:y1, x0:x1]
        visible = mask & ~occ
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
        if semantic_score is None:
            index = semantic.long().clamp(max=semantic_probs.shape[0] - 1)[None]
            semantic_score = semantic_probs.to(device).gather(0, index)[0]
        own_prob = semantic_score.to(device)[paint].double()
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
