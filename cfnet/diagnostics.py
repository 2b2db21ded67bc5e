"""Correlation diagnostics: the paper's Fig. 8 as numbers (``cfnet analyze``, :func:`analyze`).

    cfnet analyze --checkpoint default --data data/shapes/val --json diag.json --max-images 50

Fig. 8 shows single correlation maps and asks the reader to see "task-specific, scene-related"
correlations in them. :func:`analyze` measures, over a validation split, whether the two modules do
what §3.3 says they are for. It returns exactly these keys (``None`` where the model has no SCM /
no ICM, or where nothing could be measured):

**SCM** (Eq. 9, axes as the design notes fix them: row weights softmax_{v_x} G(θ_u^hor, v_x),
column weights softmax_{v_y} G(θ_u^ver, v_y)), at the SCM's finest level: the semantic head
applies one shared SCM to P2..P5, and P2 (stride 4) is the finest. Ground-truth classes are taken
at each cell's centre (nearest neighbour, :func:`cell_sample_indices`); cells whose centre is void,
crowd or batch padding are *ignored*.

- ``scm_same_class_mass``: for every non-ignored pixel u, the share of its row weights that lands
  on pixels of u's own class, ``Σ_{v same class} w_uv / Σ_{v not ignored} w_uv`` (ignored v are
  dropped and the weights renormalised over the rest), the same for its column weights, averaged
  over the two axes; then the mean over all such u of all images (pixel-weighted).
- ``scm_uniform_mass``: the same with uniform weights — the share of same-class pixels among the
  non-ignored pixels of u's row and of its column — the chance level the learned weights compete
  with.
- ``scm_entropy``: the entropy (nats) of the module's own softmax weights of u's row and of its
  column (over the whole axis of the map, as the aggregation uses them — nothing renormalised),
  averaged over the two axes and over the same pixels u.
- ``scm_log_w`` / ``scm_log_h``: log W and log H of the level's map, averaged over the same pixels
  u: the entropies of uniform row / column weights, the ceiling ``scm_entropy`` is read against.

**ICM** (Eqs. 10–11), over every touching pair of same-class thing instances of the split
(:func:`cfnet.panoptic_io.adjacent_segment_pairs` on the ground-truth panoptic map, crowd regions
left out), at the *first instance level*: SOLOv2's ``level_features(...)[0]`` (with the SOLOv2
strides, P2 resized to stride 8), the level that holds the smallest instances and the finest grid,
and the map the ICM runs on there. (The ICM is shared by all levels; the first level gives the
most cells per instance.) An instance's cells are those whose centre lies in it (nearest
neighbour); a pair is used when both instances have at least :data:`MIN_CELLS` cells.

- ``icm_separability``: leave-one-out nearest-centroid accuracy of the correlation features c_u
  (Eq. 10, ``correlation_features``), pooled over pairs and weighted by cells: every cell of A or
  B is assigned to the nearer (Euclidean, raw features) of the two instance centroids, its own
  instance's centroid computed without it; accuracy = correct cells / all cells of all pairs
  (:func:`nearest_centroid_loo_scores`; an exact tie counts as half). 0.5 is chance; two
  instances whose features come from one distribution score slightly *below* 0.5, because
  leaving a cell out pulls its own centroid away from it.
- ``icm_output_separability``: the same for f^I_u = W_f f_u + conv1x1(c)_u (Eq. 11), computed as
  ``feature_proj(x) + correlation_proj(c)``.
- ``input_separability``: the same for the features fed to the position module (f_u).
- ``coords_separability``: the same for SOLOv2's two CoordConv channels at those cells.
- ``sine_separability``: the same for DETR's sine embedding with the level's channel count.
  The three reference values are computed for every model, ICM or not.
- ``icm_pairs``: the number of pairs used (an int, also without an ICM).
- ``icm_term_ratio``: the size of the correlation term of Eq. 11 against the feature term, as the
  *ratio of mean absolute values*: ``Σ |correlation_proj(c)| / Σ |feature_proj(x)|`` over all
  channels of the cells used above (each cell once per pair it is used in). A ratio of sums, not
  a mean of per-cell ratios, so that cells where W_f f happens to be near 0 cannot dominate.

The ICM is found by ``isinstance(module, InstanceCorrelationModule)`` and used only through
``correlation_features``, ``feature_proj`` and ``correlation_proj``, so ICM variants (e.g. one
whose θ predictor also sees coordinates) work unchanged; the SCM by ``isinstance(module,
SemanticCorrelationModule)``, through ``params`` and the correlation function of
:mod:`cfnet.correlation` (one helper, :func:`_axis_correlation`).

Model code never imports this module.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cfnet.categories import IGNORE_INDEX
from cfnet.correlation import pixel_coords
from cfnet.heads.instance import coord_features
from cfnet.heads.semantic import SEMANTIC_LEVELS
from cfnet.inspection import Geometry, cell_centres
from cfnet.modules.baselines import sine_position_embedding
from cfnet.modules.icm import InstanceCorrelationModule
from cfnet.modules.scm import SemanticCorrelationModule
from cfnet.panoptic_io import adjacent_segment_pairs, semantic_from_panoptic

__all__ = [
    "RESULT_KEYS",
    "MIN_CELLS",
    "analyze",
    "same_class_mass",
    "weight_entropy",
    "scm_axial_weights",
    "nearest_centroid_loo_scores",
    "nearest_centroid_loo_accuracy",
    "cell_sample_indices",
    "format_table",
    "add_arguments",
    "main",
]

RESULT_KEYS = (
    "scm_same_class_mass",
    "scm_uniform_mass",
    "scm_entropy",
    "scm_log_w",
    "scm_log_h",
    "icm_separability",
    "icm_output_separability",
    "input_separability",
    "coords_separability",
    "sine_separability",
    "icm_pairs",
    "icm_term_ratio",
)

# Leave-one-out needs a centroid of the other cells of the instance: at least 2 cells each.
MIN_CELLS = 2
SCM_LEVEL = SEMANTIC_LEVELS[0]  # "p2": the finest level the shared SCM runs on
ICM_LEVEL_INDEX = 0  # the first instance level (SOLOv2's level_features()[0])
_REPRESENTATIONS = ("icm", "icm_output", "input", "coords", "sine")

# ----------------------------------------------------------------------------------------------
# pure cores (tensors in, numbers out)


def same_class_mass(row_w: Tensor, col_w: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Per-pixel share of the axial weights of Eq. 9 on pixels of the pixel's own class.

    Args:
        row_w: ``(H, W, W)``; ``row_w[y, u_x, v_x]`` is the weight pixel ``(y, u_x)`` gives to
            ``(y, v_x)`` of its row.
        col_w: ``(H, W, H)``; ``col_w[u_y, x, v_y]`` is the weight pixel ``(u_y, x)`` gives to
            ``(v_y, x)`` of its column.
        labels: ``(H, W)`` integer class per pixel; ``ignore_index`` marks ignored pixels.

    Returns ``(H, W)`` float64: for every non-ignored u, ``½·(Σ_{v∈row, same} w / Σ_{v∈row, not
    ignored} w + the same for the column)`` — ignored v are dropped and the weights renormalised
    over the rest; NaN where u itself is ignored. Uniform weights give the share of same-class
    pixels among the non-ignored pixels of u's row and column (the chance level).
    """
    height, width = labels.shape
    if row_w.shape != (height, width, width) or col_w.shape != (height, width, height):
        raise ValueError(
            f"row_w must be (H, W, W) and col_w (H, W, H) for labels {tuple(labels.shape)}, got "
            f"{tuple(row_w.shape)} and {tuple(col_w.shape)}"
        )
    row_w, col_w = row_w.double(), col_w.double()
    labels = labels.to(row_w.device)
    valid = labels != ignore_index
    # Row of u = (y, u_x): compare labels[y, u_x] with labels[y, v_x].
    row_valid = valid[:, None, :]  # (H, 1, W) over v_x
    row_same = (labels[:, :, None] == labels[:, None, :]) & row_valid
    row_mass = (row_w * row_same).sum(-1) / (row_w * row_valid).sum(-1)
    # Column of u = (u_y, x): compare labels[u_y, x] with labels[v_y, x] (= labels.T[x, v_y]).
    col_valid = valid.T[None, :, :]  # (1, W, H) over v_y
    col_same = (labels[:, :, None] == labels.T[None, :, :]) & col_valid
    col_mass = (col_w * col_same).sum(-1) / (col_w * col_valid).sum(-1)
    mass = 0.5 * (row_mass + col_mass)
    return torch.where(valid, mass, torch.full_like(mass, math.nan))


def weight_entropy(w: Tensor, dim: int = -1) -> Tensor:
    """Entropy ``-Σ w log w`` in nats of weight vectors along ``dim`` (0·log 0 = 0); float64.

    Uniform weights over L positions give log L; all weight on one position gives 0.
    """
    w = w.double()
    return -torch.special.xlogy(w, w).sum(dim)


def nearest_centroid_loo_scores(feats_a: Tensor, feats_b: Tensor) -> Tensor:
    """Per-cell leave-one-out nearest-centroid scores for two groups, ``(n_a + n_b,)`` float64.

    Each cell of ``feats_a`` ``(n_a, D)`` and ``feats_b`` ``(n_b, D)`` is compared (Euclidean
    distance) with the centroid of its own group computed without it and with the other group's
    centroid: 1 when its own is strictly nearer, 0 when the other is, ½ on a tie (so two groups of
    identical features score exactly 0.5). Needs at least 2 cells per group.
    """
    a = _as_cells(feats_a, "feats_a")
    b = _as_cells(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_a and feats_b need the same dimension, got {a.shape[1]} and {b.shape[1]}")
    return torch.cat([_loo_scores(a, b), _loo_scores(b, a)])


def nearest_centroid_loo_accuracy(feats_a: Tensor, feats_b: Tensor) -> float:
    """Leave-one-out nearest-centroid accuracy (correct cells / all cells) of two groups; see
    :func:`nearest_centroid_loo_scores`. 1.0 for separable clusters, ≈ 0.5 (chance) or below when the
    groups do not differ."""
    return float(nearest_centroid_loo_scores(feats_a, feats_b).mean())


def _as_cells(x: Tensor, name: str) -> Tensor:
    x = torch.as_tensor(x)
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2 or x.shape[0] < MIN_CELLS:
        raise ValueError(f"{name} must be (n, D) with n >= {MIN_CELLS} cells, got {tuple(x.shape)}")
    return x.double()


def _loo_scores(own: Tensor, other: Tensor) -> Tensor:
    n = own.shape[0]
    # Centroid of the own group without cell i: (Σ own − own_i) / (n − 1), for every i at once.
    own_loo = (own.sum(0, keepdim=True) - own) / (n - 1)
    d_own = (own - own_loo).square().sum(1)
    d_other = (own - other.mean(0, keepdim=True)).square().sum(1)
    # Ties within float round-off (identical features give both distances as 0 or equal up to it).
    tol = 1e-9 * torch.maximum(d_own, d_other) + 1e-300
    tie = (d_own - d_other).abs() <= tol
    return torch.where(tie, torch.full_like(d_own, 0.5), (d_own < d_other).double())


def cell_sample_indices(geometry: Geometry, feature_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices into the *original* image of every feature cell's centre.

    Nearest-neighbour downsampling: cell ``(i, j)`` of a ``feature_size`` map over the padded batch
    takes the ground truth of the image pixel under its centre (the pixel-centre convention of
    :mod:`cfnet.inspection`). Cells whose centre lies in the batch padding get index -1.
    """
    cy, cx = cell_centres(geometry, feature_size)  # image pixels (continuous)
    height, width = geometry.image_size
    rows = np.floor(cy).astype(np.int64)
    cols = np.floor(cx).astype(np.int64)
    rows[rows >= height] = -1
    cols[cols >= width] = -1
    return rows, cols


def _sample(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, fill: int) -> np.ndarray:
    out = values[np.ix_(np.maximum(rows, 0), np.maximum(cols, 0))].copy()
    out[rows < 0, :] = fill
    out[:, cols < 0] = fill
    return out


# ----------------------------------------------------------------------------------------------
# model side


def _axis_correlation(module: nn.Module, theta: Tensor, length: int) -> Tensor:
    """G(θ, v) at every pixel v = 0..length-1 of the axis, with the module's own correlation
    function (Eq. 5 for ``dft``): ``(..., P) -> (..., length)``."""
    coords = pixel_coords(length, device=theta.device, dtype=theta.dtype)
    return module.function(theta, coords, length)


def scm_axial_weights(scm: SemanticCorrelationModule, x: Tensor) -> tuple[Tensor, Tensor]:
    """The softmax weights of Eq. 9 of every pixel of one map ``x`` (1, C, H, W), in float64.

    Returns ``row_w (H, W, W)`` = softmax_{v_x} G(θ_u^hor, v_x) and ``col_w (H, W, H)`` =
    softmax_{v_y} G(θ_u^ver, v_y) (axes as the design notes fix them); the same numbers as
    :meth:`SemanticCorrelationModule.axial_weights` gives for one pixel, for all pixels at once.
    """
    _, _, height, width = x.shape
    theta_hor, theta_ver = scm.params(x)  # (1, H, W, 2N+1) each
    # float64: collapsed weights (amplitudes of ≈ 20) must not underflow before the renormalisation.
    row_w = torch.softmax(_axis_correlation(scm, theta_hor[0].double(), width), dim=-1)
    col_w = torch.softmax(_axis_correlation(scm, theta_ver[0].double(), height), dim=-1)
    return row_w, col_w


def _scm_image(scm: SemanticCorrelationModule, x: Tensor, labels: Tensor) -> dict[str, float]:
    """Sums over the non-ignored pixels u of one image's SCM level (see the module docstring)."""
    _, _, height, width = x.shape
    row_w, col_w = scm_axial_weights(scm, x)
    labels = labels.to(row_w.device)
    valid = labels != IGNORE_INDEX
    n = int(valid.sum())
    if n == 0:
        return {"n": 0}
    mass = same_class_mass(row_w, col_w, labels)
    uniform = same_class_mass(torch.full_like(row_w, 1 / width), torch.full_like(col_w, 1 / height), labels)
    entropy = 0.5 * (weight_entropy(row_w) + weight_entropy(col_w))
    return {
        "n": n,
        "mass": float(mass[valid].sum()),
        "uniform": float(uniform[valid].sum()),
        "entropy": float(entropy[valid].sum()),
        "log_w": n * math.log(width),
        "log_h": n * math.log(height),
    }


def _icm_representations(position: nn.Module, x: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Per-cell representations ``(D, H, W)`` of the level feature ``x`` (1, C, H, W), and the two
    terms of Eq. 11 when the position module is an ICM."""
    _, channels, height, width = x.shape
    reps = {
        "input": x[0],
        "coords": coord_features(x)[0],
        # DETR's embedding needs an even channel count; FPN widths are even, round up otherwise.
        "sine": sine_position_embedding(
            channels + channels % 2, height, width, device=x.device, dtype=x.dtype
        ),
    }
    terms: dict[str, Tensor] = {}
    if isinstance(position, InstanceCorrelationModule):
        c = position.correlation_features(x)  # (1, S², H, W), Eq. 10
        feature_term = position.feature_proj(x)  # W_f f
        correlation_term = position.correlation_proj(c)  # conv1x1(c)
        reps["icm"] = c[0]
        reps["icm_output"] = (feature_term + correlation_term)[0]  # f^I, Eq. 11
        terms = {"feature": feature_term[0], "correlation": correlation_term[0]}
    return reps, terms


def _touching_same_class_pairs(
    ids: np.ndarray, segments_info: list[dict], categories
) -> list[tuple[int, int]]:
    """Non-crowd thing segments of the same category that share a pixel edge."""
    things = {}
    for s in segments_info:
        c = categories.contiguous(s["category_id"])
        if categories.is_thing(c) and not int(s.get("iscrowd", 0)):
            things[int(s["id"])] = c
    return [
        (a, b)
        for a, b in sorted(adjacent_segment_pairs(ids))
        if a in things and b in things and things[a] == things[b]
    ]


@torch.no_grad()
def analyze(
    model: nn.Module,
    split_dir: str | Path,
    *,
    max_images: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Correlation diagnostics of ``model`` on a COCO-panoptic split (see the module docstring).

    ``split_dir`` is anything :class:`cfnet.data.PanopticDataset` accepts; ``max_images`` takes the
    first N images of the split (default: all). Each image runs alone (no padding shared with other
    images). Returns a dict with exactly :data:`RESULT_KEYS`; the model's train/eval mode is
    restored afterwards.
    """
    from tqdm.auto import tqdm

    from cfnet.data import PanopticDataset

    if max_images is not None and (
        isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1
    ):
        raise ValueError(f"max_images must be a positive int or None, got {max_images!r}")
    categories = model.categories
    dataset = PanopticDataset(split_dir, categories=categories)
    if len(dataset) == 0:
        raise ValueError(f"{dataset.json_path}: the split holds no images")
    count = len(dataset) if max_images is None else min(max_images, len(dataset))

    scm = model.semantic_head.module
    scm = scm if isinstance(scm, SemanticCorrelationModule) else None
    head = model.instance_head
    position = head.position
    has_icm = isinstance(position, InstanceCorrelationModule)

    scm_sums = {"n": 0, "mass": 0.0, "uniform": 0.0, "entropy": 0.0, "log_w": 0.0, "log_h": 0.0}
    scores: dict[str, list[Tensor]] = {k: [] for k in _REPRESENTATIONS}
    term_sums = {"feature": 0.0, "correlation": 0.0}
    pairs_used = 0

    was_training = model.training
    model.to(device).eval()
    try:
        for i in tqdm(range(count), desc="analyze", disable=not progress, dynamic_ncols=True):
            image_u8, ids, segments_info = dataset.load_panoptic(i)
            image = torch.from_numpy(np.ascontiguousarray(image_u8)).permute(2, 0, 1).float().div_(255.0)
            batch, sizes = model.preprocess([image.to(device)])
            features = model.features(batch)
            geometry = Geometry(
                (int(ids.shape[0]), int(ids.shape[1])),
                (int(sizes[0][0]), int(sizes[0][1])),
                (int(batch.shape[-2]), int(batch.shape[-1])),
            )

            if scm is not None:
                x = features[SCM_LEVEL]  # SemanticHead applies its module to this FPN output
                rows, cols = cell_sample_indices(geometry, tuple(x.shape[-2:]))
                sem = semantic_from_panoptic(ids, segments_info, categories, ignore_index=IGNORE_INDEX)
                labels = torch.from_numpy(_sample(sem, rows, cols, IGNORE_INDEX))
                for k, v in _scm_image(scm, x, labels).items():
                    scm_sums[k] += v

            pairs = _touching_same_class_pairs(ids, segments_info, categories)
            if not pairs:
                continue
            # SOLOv2InstanceHead.forward applies its position module to exactly this tensor.
            x = head.level_features(features)[ICM_LEVEL_INDEX]
            rows, cols = cell_sample_indices(geometry, tuple(x.shape[-2:]))
            cell_ids = torch.from_numpy(_sample(ids, rows, cols, 0)).to(x.device)
            reps, terms = _icm_representations(position, x)
            for a, b in pairs:
                sel_a, sel_b = cell_ids == a, cell_ids == b
                if int(sel_a.sum()) < MIN_CELLS or int(sel_b.sum()) < MIN_CELLS:
                    continue  # too small at this level's stride for a leave-one-out centroid
                pairs_used += 1
                for name, rep in reps.items():
                    # rep[:, sel] is (D, n): cells as rows for the scorer
                    scores[name].append(nearest_centroid_loo_scores(rep[:, sel_a].T, rep[:, sel_b].T).cpu())
                if terms:
                    sel = sel_a | sel_b
                    for name, t in terms.items():
                        term_sums[name] += float(t[:, sel].double().abs().sum())
    finally:
        model.train(was_training)

    def pooled(name: str) -> float | None:
        return float(torch.cat(scores[name]).mean()) if scores[name] else None

    n = scm_sums["n"]
    have_scm = scm is not None and n > 0
    result: dict[str, Any] = {
        "scm_same_class_mass": scm_sums["mass"] / n if have_scm else None,
        "scm_uniform_mass": scm_sums["uniform"] / n if have_scm else None,
        "scm_entropy": scm_sums["entropy"] / n if have_scm else None,
        "scm_log_w": scm_sums["log_w"] / n if have_scm else None,
        "scm_log_h": scm_sums["log_h"] / n if have_scm else None,
        "icm_separability": pooled("icm") if has_icm else None,
        "icm_output_separability": pooled("icm_output") if has_icm else None,
        "input_separability": pooled("input"),
        "coords_separability": pooled("coords"),
        "sine_separability": pooled("sine"),
        "icm_pairs": pairs_used,
        "icm_term_ratio": (
            term_sums["correlation"] / term_sums["feature"]
            if has_icm and pairs_used and term_sums["feature"] > 0
            else None
        ),
    }
    assert tuple(result) == RESULT_KEYS
    return result


def _first_images(model: nn.Module, split_dir: str | Path, max_images: int, **other_counts: int):
    """``(dataset, n)``: ``split_dir`` read with ``model``'s categories and how many of its first
    images to use (``max_images`` at most). ``max_images`` and ``other_counts`` (named as the
    caller's arguments, for the error) must be positive ints."""
    from cfnet.data import PanopticDataset

    for name, value in {"max_images": max_images, **other_counts}.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    dataset = PanopticDataset(split_dir, categories=model.categories)
    count = min(max_images, len(dataset))
    if count == 0:
        raise ValueError(f"{dataset.json_path}: the split holds no images")
    return dataset, count


FIT_IMAGES = 64
"""Training images :func:`fit_loss` scores: the first 64 of the split, enough for a stable mean."""


def fit_loss(
    model: nn.Module,
    split_dir: str | Path,
    *,
    max_images: int = FIT_IMAGES,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> float:
    """The training loss (Eq. 1, the sum the trainer minimises) of ``model``'s weights on a fixed set.

    A run whose loss spiked and never came back ends with weights that no longer fit the data it
    was trained on; its evaluation then says nothing about the module it ablates. This measures
    that from the weights alone, so it can be computed for any kept checkpoint: the first
    ``max_images`` images of ``split_dir`` (a training split), at their stored size, no
    augmentation, in fixed batches of ``batch_size`` (SOLOv2's losses are normalised per batch),
    with batch-norm in eval mode: its running statistics, as at test time, so that a network whose
    statistics drifted away from its weights shows it, and nothing is updated. Returns the
    image-weighted mean over the batches. The model's train/eval mode is restored.
    """
    dataset, count = _first_images(model, split_dir, max_images=max_images, batch_size=batch_size)
    was_training = model.training
    model.to(device).train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    total = 0.0
    try:
        with torch.no_grad():
            for start in range(0, count, batch_size):
                items = [dataset[i] for i in range(start, min(start + batch_size, count))]
                losses = model([img.to(device) for img, _ in items], [t for _, t in items])
                total += float(sum(losses.values())) * len(items)
    finally:
        model.train(was_training)
    return total / count


SCALE_IMAGES = 8
"""Training images :func:`feature_scale` runs: activation means settle within a few images."""


def feature_scale(
    model: nn.Module,
    split_dir: str | Path,
    *,
    max_images: int = SCALE_IMAGES,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Mean |activation| of every ResNet stage and FPN level of ``model`` on the first images of a split.

    Keys ``body.layer1`` … ``body.layer4`` (each stage ends in batch-norm) and the FPN levels
    (``p2`` … ``p6``; the FPN has no normalisation). Eval mode, one batch of the first
    ``max_images`` images as the model's test transform prepares them. Why: a run can diverge
    without a NaN, and the ablation study's diverged runs did so with normal ResNet outputs but
    FPN outputs 30–90× larger (mean over P2…P6) than any converged run's; this puts that
    measurement beside :func:`fit_loss` in every result. The model's train/eval mode is restored.
    """
    dataset, count = _first_images(model, split_dir, max_images=max_images)
    stages: dict[str, Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, name=name: stages.__setitem__(f"body.{name}", out))
        for name, m in model.backbone.body.named_children()
        if name.startswith("layer")
    ]
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.no_grad():
            batch, _ = model.transform([dataset[i][0].to(device) for i in range(count)])
            levels = model.features(batch.tensors)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: float(x.abs().mean()) for name, x in [*stages.items(), *levels.items()]}


# ----------------------------------------------------------------------------------------------
# report and CLI


def format_table(result: dict[str, Any]) -> str:
    """A small text table of :func:`analyze`'s result."""

    def f(v: Any) -> str:
        return "   n/a" if v is None else f"{v:6.3f}"

    rows = [
        f"SCM at {SCM_LEVEL.upper()} (Eq. 9)                    learned  uniform",
        f"  weight on own-class pixels               {f(result['scm_same_class_mass'])}   "
        f"{f(result['scm_uniform_mass'])}",
        f"  entropy of the weights (nats)            {f(result['scm_entropy'])}   "
        f"log W {f(result['scm_log_w']).strip()}, log H {f(result['scm_log_h']).strip()}",
        f"ICM, first instance level: {result['icm_pairs']} touching same-class pairs",
        "  leave-one-out nearest-centroid accuracy (0.5 = chance)",
        f"    c_u (Eq. 10)                           {f(result['icm_separability'])}",
        f"    f^I_u (Eq. 11)                         {f(result['icm_output_separability'])}",
        f"    input features f_u                     {f(result['input_separability'])}",
        f"    CoordConv (x, y)                       {f(result['coords_separability'])}",
        f"    sine embedding                         {f(result['sine_separability'])}",
        f"  |conv1x1(c)| / |W_f f| (Eq. 11)          {f(result['icm_term_ratio'])}",
    ]
    return "\n".join(rows)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="default", help="checkpoint (default: the shipped model)")
    parser.add_argument("--data", required=True, help="split folder (images/, panoptic/, panoptic.json)")
    parser.add_argument("--json", default=None, help="write the result as JSON to this file")
    parser.add_argument("--max-images", type=_positive_int, default=None, help="first N images only")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from cfnet.checkpoint import CheckpointError, load_checkpoint
    from cfnet.engine.runtime import resolve_device

    try:
        device = resolve_device(args.device)
        model, _, _ = load_checkpoint(args.checkpoint, device=device)
        result = analyze(
            model, args.data, max_images=args.max_images, device=device, progress=not args.no_progress
        )
    except (CheckpointError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"cfnet analyze: {e}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")
    return 0
