"""SOLOv2 target assignment for the instance branch (category grids and mask targets).

For one image and every level ``l`` with an S×S grid and scale range ``[lo, hi]``:

1. **Scale.** An instance's scale is ``sqrt(w·h)`` of its mask's bounding box (the box of the
   *visible* mask, so a crop shrinks it). It is assigned to every level whose closed range
   ``lo ≤ scale ≤ hi`` contains it — SOLOv2's ranges overlap, so one instance may train two
   levels; an instance outside all ranges trains none.
2. **Centre region.** With the centre of mass ``(c_x, c_y)`` of the mask and the box size
   ``(w, h)``, SOLOv2's centre sampling marks the grid cells hit by the box
   ``c ± σ·(w/2, h/2)`` (σ = 0.2), clipped to the 3×3 cells around the centre cell and to the
   grid. Cell ``k`` along an axis of padded length ``U`` covers ``[k·U/S, (k+1)·U/S)``, with
   ``U = 4·mask_size`` (SOLOv2's "upsampled size" of the stride-4 mask feature).
3. **Labels and masks.** Every cell in the region gets the instance's class and its mask target
   (the mask resized to the unified mask-feature size ``mask_size``, stride 4). Cells are
   written largest instance first (by mask area, stable), so a smaller instance overwrites the
   cells it shares with a larger one and keeps its centre cells (DESIGN §9).

Mask targets, stride 4: by default *hard*, the nearest sample at the centre pixel of each 4×4
block (``mask[2::4, 2::4]``, as AdelaiDet). With ``soft_mask_targets=True`` they are *soft*: the
4×4 average (the fraction of each stride-4 cell the object covers). Soft targets matter for small
objects: a hard target quantises an object to whole 4×4 cells, so an object of a few pixels
becomes an empty target (dice gradient 0: nothing to learn) or a blocky one, capping the IoU
the upsampled, thresholded prediction can ever reach. The soft target keeps the coverage
fraction; the dice loss is minimised exactly at ``p = t``, and bilinear upsampling ×4 of such a
map, thresholded at 0.5, recovers sub-cell boundaries.

Where the reference implementations differ (AdelaiDet ``SOLOv2.get_ground_truth_single``,
mmdetection ``SOLOV2Head._get_targets_single``), the choices made here:

* Box: taken from the mask (``x2 = last column + 1``), not from annotation boxes (both
  references use the dataset's boxes, which after a crop no longer match the visible mask).
* Centre of mass in pixel-index coordinates (``x = column index``), as both references.
* Cell index ``floor(c·S/U)`` in float64. The references compute ``(c/U) // (1/S)``, which at
  exact cell boundaries can land one cell lower through the rounding of ``1/S``
  (``0.5 // 0.1 == 4.0``).
* Hard mask resize: AdelaiDet samples ``[2::4, 2::4]`` (used here); mmdetection rescales with
  OpenCV bilinear interpolation and rounds, which amounts to the mean of the central 2×2 pixels
  of each block.
* Skipped instances: empty masks (all false) only, as mmdetection. AdelaiDet also skips
  instances with ≤ 5 pixels in the stride-4 target, which deletes exactly the small objects
  that soft targets are meant to keep.
* Overlaps: both references append one mask target per (instance, cell) pair, so a cell
  shared by two instances appears twice in their positive list while its category label is the
  last writer's. Here each cell has one owner (the last writer, i.e. the smaller instance), so
  ``labels``, ``positive_index`` and ``mask_targets`` always agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

MASK_STRIDE = 4  # the unified mask feature is at stride 4 (P2)


@dataclass
class LevelTargets:
    """Targets of one image at one level.

    Attributes:
        labels: (S, S) long category grid; ``num_things`` = background.
        positive_index: (P,) long flattened positive cells ``i·S + j`` (row i, column j),
            sorted ascending.
        mask_targets: (P, Hm, Wm) float32 mask target of each positive cell, in [0, 1].
        instance_index: (P,) long index (into the input instances) of the instance that owns
            each positive cell; for inspection and tests (``None`` when built by hand).
    """

    labels: Tensor
    positive_index: Tensor
    mask_targets: Tensor
    instance_index: Tensor | None = None


def resize_mask_targets(masks: Tensor, mask_size: Sequence[int], soft: bool = False) -> Tensor:
    """(K, H, W) bool masks -> (K, Hm, Wm) float32 stride-4 mask targets (see the module docstring).

    The masks are zero-padded at the bottom/right to ``4·mask_size`` first; ``mask_size`` must be
    ``(ceil(H/4), ceil(W/4))``.
    """
    k, h, w = masks.shape
    hm, wm = (int(s) for s in mask_size)
    if (hm, wm) != (math.ceil(h / MASK_STRIDE), math.ceil(w / MASK_STRIDE)):
        raise ValueError(
            f"mask_size must be (ceil(H/4), ceil(W/4)) = {(math.ceil(h / 4), math.ceil(w / 4))} for masks "
            f"of size {(h, w)}, got {(hm, wm)}"
        )
    if k == 0:
        return torch.zeros(0, hm, wm, dtype=torch.float32, device=masks.device)
    if soft:
        x = F.pad(masks.to(torch.float32)[:, None], (0, wm * MASK_STRIDE - w, 0, hm * MASK_STRIDE - h))
        return F.avg_pool2d(x, MASK_STRIDE, MASK_STRIDE)[:, 0]
    # hard: sample the block centres directly (no full-resolution float copy); samples that
    # fall into the padding stay 0
    start = MASK_STRIDE // 2
    sampled = masks[:, start::MASK_STRIDE, start::MASK_STRIDE]
    out = torch.zeros(k, hm, wm, dtype=torch.float32, device=masks.device)
    out[:, : sampled.shape[1], : sampled.shape[2]] = sampled
    return out


def _check_inputs(
    masks: Tensor,
    labels: Tensor,
    num_things: int,
    num_grids: Sequence[int],
    scale_ranges: Sequence[Sequence[float]],
    mask_size: Sequence[int],
) -> None:
    if masks.dim() != 3:
        raise ValueError(f"assign_targets: masks must be (K, H, W), got shape {tuple(masks.shape)}")
    k = masks.shape[0]
    if labels.shape != (k,):
        raise ValueError(f"assign_targets: labels must be ({k},) to match masks, got {tuple(labels.shape)}")
    if k and (int(labels.min()) < 0 or int(labels.max()) >= num_things):
        raise ValueError(
            f"assign_targets: labels must be thing ids in [0, num_things={num_things}), "
            f"got range [{int(labels.min())}, {int(labels.max())}]"
        )
    if len(num_grids) != len(scale_ranges):
        raise ValueError(
            f"assign_targets: num_grids ({len(num_grids)} levels) and scale_ranges "
            f"({len(scale_ranges)} levels) must have the same length"
        )
    for lvl, r in enumerate(scale_ranges):
        if len(r) != 2 or float(r[0]) > float(r[1]):
            raise ValueError(f"assign_targets: scale_ranges[{lvl}] must be [lo, hi] with lo <= hi, got {r}")
    if any(int(s) < 1 for s in num_grids):
        raise ValueError(f"assign_targets: num_grids must be positive, got {list(num_grids)}")
    if len(mask_size) != 2:
        raise ValueError(f"assign_targets: mask_size must be (Hm, Wm), got {mask_size}")


def assign_targets(
    masks: Tensor,
    labels: Tensor,
    *,
    num_things: int,
    num_grids: list[int],
    scale_ranges: list[list[float]],
    sigma: float = 0.2,
    mask_size: tuple[int, int],
    soft_mask_targets: bool = False,
) -> list[LevelTargets]:
    """SOLOv2 targets of one image for every level (see the module docstring).

    Args:
        masks: (K, H, W) bool instance masks at the padded input resolution.
        labels: (K,) long contiguous thing ids in ``[0, num_things)``.
        num_things: T, the number of thing classes; ``T`` is the background label of the grids.
        num_grids: S per level (SOLOv2 R50: 40, 36, 24, 16, 12).
        scale_ranges: ``[lo, hi]`` per level on ``sqrt(w·h)`` of the box, in input pixels.
        sigma: centre-region scale σ (SOLOv2: 0.2).
        mask_size: (Hm, Wm) of the unified stride-4 mask feature: ``(ceil(H/4), ceil(W/4))``.
        soft_mask_targets: average-pooled (soft) instead of nearest (hard) mask targets.

    Returns:
        One :class:`LevelTargets` per level.
    """
    _check_inputs(masks, labels, num_things, num_grids, scale_ranges, mask_size)
    device = masks.device
    masks = masks.bool()
    k, h, w = masks.shape
    hm, wm = (int(s) for s in mask_size)
    mask_targets = resize_mask_targets(masks, (hm, wm), soft=soft_mask_targets)
    up_h, up_w = hm * MASK_STRIDE, wm * MASK_STRIDE

    # per-instance geometry, once for all levels, in float64 (exact for any image size): two
    # passes over the full-resolution masks, everything else works on their row/column projections
    row_count = masks.sum(2).to(torch.float64)  # (K, H) pixels per row
    col_count = masks.sum(1).to(torch.float64)  # (K, W) pixels per column
    area = row_count.sum(1)
    rows, cols = row_count > 0, col_count > 0
    ys = torch.arange(h, device=device, dtype=torch.float64)
    xs = torch.arange(w, device=device, dtype=torch.float64)
    y1 = torch.where(rows, ys, math.inf).min(1).values
    y2 = torch.where(rows, ys, -math.inf).max(1).values + 1
    x1 = torch.where(cols, xs, math.inf).min(1).values
    x2 = torch.where(cols, xs, -math.inf).max(1).values + 1
    denom = area.clamp(min=1)
    cy = (row_count * ys).sum(1) / denom
    cx = (col_count * xs).sum(1) / denom
    box_h, box_w = (y2 - y1), (x2 - x1)
    valid = (area > 0).tolist()
    scale = torch.sqrt(box_w * box_h).tolist()
    geom = list(zip(cx.tolist(), cy.tolist(), box_w.tolist(), box_h.tolist()))
    # largest first (stable): smaller instances are written last and keep their cells
    area_list = area.tolist()
    order = sorted(range(k), key=lambda i: -area_list[i])

    out: list[LevelTargets] = []
    for s, (lo, hi) in zip(num_grids, scale_ranges):
        s = int(s)
        owner = [[-1] * s for _ in range(s)]
        for i in order:
            if not valid[i] or not (float(lo) <= scale[i] <= float(hi)):
                continue
            c_x, c_y, bw, bh = geom[i]
            half_w, half_h = 0.5 * bw * sigma, 0.5 * bh * sigma
            coord_w, coord_h = math.floor(c_x * s / up_w), math.floor(c_y * s / up_h)
            top = max(0, math.floor((c_y - half_h) * s / up_h), coord_h - 1)
            down = min(s - 1, math.floor((c_y + half_h) * s / up_h), coord_h + 1)
            left = max(0, math.floor((c_x - half_w) * s / up_w), coord_w - 1)
            right = min(s - 1, math.floor((c_x + half_w) * s / up_w), coord_w + 1)
            for r in range(top, down + 1):
                for c in range(left, right + 1):
                    owner[r][c] = i
        own = torch.tensor(owner, dtype=torch.long, device=device).flatten()
        pos = torch.nonzero(own >= 0).flatten()  # ascending
        inst = own[pos]
        grid = torch.full((s * s,), num_things, dtype=torch.long, device=device)
        if len(inst):
            grid[pos] = labels.to(device=device, dtype=torch.long)[inst]
        out.append(
            LevelTargets(
                labels=grid.view(s, s),
                positive_index=pos,
                mask_targets=mask_targets[inst],
                instance_index=inst,
            )
        )
    return out
