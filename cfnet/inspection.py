"""What SCM and ICM learned for one pixel: the model-side logic of the demo's click-to-inspect.

``inspect_point(model, image, point=(row, col), level="p3")`` returns, for the pixel ``u`` of the
image at ``point`` and the FPN level ``level``:

- **SCM** (P2–P5; absent when the model's semantic module is not an SCM): the 2-D correlation
  map cor_2d(u, ·) of Eq. 6 over the level's map, the row and column softmax weights of the
  axial aggregation (Eq. 9, axes as DESIGN §2 fixes them), θ_u^hor / θ_u^ver and the 1-D
  functions G(θ_u^hor, x), G(θ_u^ver, y) (Eq. 5 for ``dft``);
- **ICM** (the levels the instance branch uses, P2 … P(1+len(num_grids)); absent when the
  position module is not an ICM): cor_2d(u, ·) over the whole map, the S_y×S_x correlations
  c_u with the reference points (Eq. 10) and those points' positions, θ and the curves.

Everything about G goes through the module's own correlation function (``module.function``, a
:class:`cfnet.correlation.CorrelationFunction`): the curves are its values, ``param_names`` its
names for θ's entries, and ``parameter_groups`` its :meth:`describe` of θ (for ``dft``
amplitudes A0..AN and phases ψ1..ψN; for ``gaussian`` amplitudes and widths). Each group
``key`` also appears as ``<key>_hor`` / ``<key>_ver`` (``amplitudes_hor``, ``phases_ver``, …).

The feature each module sees is exactly the one the model feeds it: the SCM gets the FPN output
``p2``…``p5`` itself (:class:`cfnet.heads.SemanticHead`); the ICM gets SOLOv2's level feature
from :meth:`cfnet.heads.SOLOv2InstanceHead.level_features` — with the SOLOv2 strides P2 is first
halved (bilinear) to P3's size, so "ICM at P2" is a stride-8 map.

Coordinate convention (pixel centres). Pixel ``(r, c)`` of an image covers
``[r, r+1) × [c, c+1)`` in continuous coordinates and stands for its centre ``(r+½, c+½)``.

1. *Original → resized input.* A resize from ``(H, W)`` to ``(h, w)`` (bilinear with
   ``align_corners=False``, what ``F.interpolate`` and Pillow do; also the demo's ``--max-side``
   downscale) scales continuous coordinates by ``h/H`` and ``w/W``: the centre goes to
   ``((r+½)·h/H, (c+½)·w/W)``. Two resizes in a row compose to one scale, so a point given in
   the pixels of an image the demo downscaled first maps with ``h/H_original`` directly.
2. *Resized → padded batch.* Padding is added at the bottom/right only: coordinates unchanged.
3. *Padded batch → feature map.* A map of ``(h_f, w_f)`` cells over the padded batch
   ``(H_p, W_p)`` has cell ``(i, j)`` covering ``[i·H_p/h_f, (i+1)·H_p/h_f) × [j·W_p/w_f, …)``
   (the grid that bilinear resizes with ``align_corners=False`` and SOLOv2's grid assignment use),
   so the point falls in cell ``(⌊y·h_f/H_p⌋, ⌊x·w_f/W_p⌋)``.

The cell is computed with exact rational arithmetic (no rounding at cell borders) and clamped
into the map. Everything returned is numpy (float64) so callers need no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cfnet._checks import check_point
from cfnet.correlation import CorrelationFunction, correlation_2d, pixel_coords
from cfnet.heads.semantic import SEMANTIC_LEVELS
from cfnet.modules.icm import InstanceCorrelationModule
from cfnet.modules.scm import SemanticCorrelationModule

__all__ = [
    "LEVELS",
    "Geometry",
    "ModuleInputs",
    "map_point",
    "feature_cell",
    "cell_centres",
    "valid_cells",
    "module_inputs",
    "inspect_point",
]

LEVELS = ("p2", "p3", "p4", "p5", "p6")


@dataclass(frozen=True)
class Geometry:
    """Sizes along the path original image → resized input → padded batch (all ``(h, w)``)."""

    image_size: tuple[int, int]  # the image the user's point is given in
    input_size: tuple[int, int]  # after the model's resize (before padding)
    padded_size: tuple[int, int]  # the padded batch

    def scale(self) -> tuple[Fraction, Fraction]:
        """Input pixels per image pixel along y and x (exact)."""
        return (
            Fraction(self.input_size[0], self.image_size[0]),
            Fraction(self.input_size[1], self.image_size[1]),
        )


def _check_point(point: Sequence[Any], size: tuple[int, int], what: str = "image") -> tuple[int, int]:
    return check_point(point, size[0], size[1], what, integral_floats=True)


def map_point(point: Sequence[int], geometry: Geometry) -> tuple[Fraction, Fraction]:
    """Continuous ``(y, x)`` of the centre of image pixel ``point`` in the resized input / padded batch."""
    row, col = _check_point(point, geometry.image_size)
    sy, sx = geometry.scale()
    return (Fraction(2 * row + 1, 2) * sy, Fraction(2 * col + 1, 2) * sx)


def feature_cell(
    point: Sequence[int], geometry: Geometry, feature_size: tuple[int, int]
) -> tuple[tuple[int, int], tuple[float, float]]:
    """The cell ``(i, j)`` of an ``(h_f, w_f)`` map holding image pixel ``point``, and the
    continuous position ``(y_f, x_f)`` of the pixel's centre on that map (cell units)."""
    y, x = map_point(point, geometry)
    hp, wp = geometry.padded_size
    hf, wf = feature_size
    yf, xf = y * hf / hp, x * wf / wp
    i = min(max(math.floor(yf), 0), hf - 1)
    j = min(max(math.floor(xf), 0), wf - 1)
    return (i, j), (float(yf), float(xf))


def _image_per_cell(geometry: Geometry, feature_size: tuple[int, int]) -> tuple[float, float]:
    """Image pixels per feature cell along y and x."""
    sy, sx = geometry.scale()
    return (
        float(Fraction(geometry.padded_size[0], feature_size[0]) / sy),
        float(Fraction(geometry.padded_size[1], feature_size[1]) / sx),
    )


def cell_centres(geometry: Geometry, feature_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the rows and columns of cells, in image pixels (continuous coordinates)."""
    dy, dx = _image_per_cell(geometry, feature_size)
    return (np.arange(feature_size[0]) + 0.5) * dy, (np.arange(feature_size[1]) + 0.5) * dx


def valid_cells(geometry: Geometry, feature_size: tuple[int, int]) -> tuple[int, int]:
    """How many rows / columns of cells overlap the image (the rest cover only batch padding)."""
    h, w = geometry.input_size
    hp, wp = geometry.padded_size
    return (
        min(feature_size[0], math.ceil(Fraction(h * feature_size[0], hp))),
        min(feature_size[1], math.ceil(Fraction(w * feature_size[1], wp))),
    )


@dataclass
class ModuleInputs:
    """The features the model feeds its SCM and ICM for one image, and the image's geometry.

    ``fpn``, ``scm`` and ``icm`` map a level name (``"p2"`` …) to a ``(1, C, h, w)`` tensor;
    ``scm`` / ``icm`` are empty when the model has no SCM / ICM, and hold only the levels the
    branch runs the module on.
    """

    geometry: Geometry
    fpn: dict[str, Tensor]
    scm: dict[str, Tensor] = field(default_factory=dict)
    icm: dict[str, Tensor] = field(default_factory=dict)
    scm_note: str | None = None
    icm_note: str | None = None


def _as_image_tensor(image: Any) -> Tensor:
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be H×W×3 (numpy) or 3×H×W (tensor), got shape {image.shape}")
        scale = 255.0 if image.dtype == np.uint8 else 1.0
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / scale
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
        raise ValueError(f"image must be a 3×H×W float tensor in [0, 1], got {shape}")
    if not image.is_floating_point():
        raise ValueError(f"image must be float RGB in [0, 1], got {image.dtype}")
    return image


def _describe(module: nn.Module, kind: str) -> str:
    return f"{type(module).__name__} ({kind})"


@torch.no_grad()
def module_inputs(model: nn.Module, image: Any, image_size: tuple[int, int] | None = None) -> ModuleInputs:
    """Run the backbone once and collect what the SCM / ICM of ``model`` see at every level.

    ``image``: 3×H×W float in [0, 1] (or H×W×3 uint8). ``image_size``: the size of the image the
    caller's points refer to, when ``image`` is a resized copy of it (default: ``image``'s size).
    """
    image = _as_image_tensor(image)
    device = next(model.parameters()).device
    if image_size is None:
        image_size = (int(image.shape[1]), int(image.shape[2]))
    image_size = (int(image_size[0]), int(image_size[1]))
    if min(image_size) < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    was_training = model.training
    model.eval()
    try:
        batch, sizes = model.preprocess([image.to(device)])
        features = model.features(batch)
        geometry = Geometry(image_size, tuple(sizes[0]), (int(batch.shape[-2]), int(batch.shape[-1])))
        fpn = dict(features)
        out = ModuleInputs(geometry, fpn)
        cfg = model.cfg.model
        sem_module = model.semantic_head.module
        if isinstance(sem_module, SemanticCorrelationModule):
            # SemanticHead.forward applies its module to the FPN output of each of these levels.
            out.scm = {key: features[key] for key in SEMANTIC_LEVELS}
        else:
            out.scm_note = (
                f"This model has no SCM: its semantic module is {_describe(sem_module, cfg.semantic.module)} "
                f"(config model.semantic.module={cfg.semantic.module!r}), so there is no learned semantic "
                "correlation function to show."
            )
        head = model.instance_head
        if isinstance(head.position, InstanceCorrelationModule):
            keys = list(features.keys())
            # SOLOv2InstanceHead.forward applies its position module to exactly these tensors.
            for i, x in enumerate(head.level_features(features)):
                out.icm[keys[i]] = x
        else:
            out.icm_note = (
                f"This model has no ICM: its position module is "
                f"{_describe(head.position, cfg.instance.position)} "
                f"(config model.instance.position={cfg.instance.position!r}), so there is no learned "
                "instance correlation function to show."
            )
    finally:
        model.train(was_training)
    return out


def _level_name(level: str) -> str:
    name = str(level).lower()
    if name not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)} (FPN levels), got {level!r}")
    return name


# Samples of the continuous curves G(θ_u, j), j ∈ [0, L), for drawing them smoothly.
CURVE_SAMPLES = 256


def _numpy(t: Tensor) -> np.ndarray:
    return t.double().cpu().numpy()


def _function_entries(function: CorrelationFunction, th: Tensor, tv: Tensor) -> dict[str, Any]:
    """θ of both axes as the function itself describes it (names, groups of numbers)."""
    groups = []
    entries: dict[str, Any] = {}
    for g_hor, g_ver in zip(function.describe(th), function.describe(tv)):
        hor, ver = _numpy(g_hor.values), _numpy(g_ver.values)
        groups.append(
            {
                "key": g_hor.key,
                "title": g_hor.title,
                "labels": list(g_hor.labels),
                "unit": g_hor.unit,
                "hor": hor,
                "ver": ver,
            }
        )
        entries[f"{g_hor.key}_hor"] = hor
        entries[f"{g_hor.key}_ver"] = ver
    entries["parameter_groups"] = groups
    return entries


def _common(
    module: nn.Module, x: Tensor, point: Sequence[int], geometry: Geometry
) -> tuple[dict[str, Any], Tensor, Tensor]:
    """Entries shared by SCM and ICM for the map ``x`` the module sees."""
    feature_size = (int(x.shape[-2]), int(x.shape[-1]))
    (i, j), (yf, xf) = feature_cell(point, geometry, feature_size)
    function: CorrelationFunction = module.function
    theta_hor, theta_ver = module.params(x)  # (1, h, w, P) each
    th, tv = theta_hor[0, i, j], theta_ver[0, i, j]
    height, width = feature_size
    xs = pixel_coords(width, device=x.device, dtype=th.dtype)
    ys = pixel_coords(height, device=x.device, dtype=tv.dtype)
    dense_x = torch.linspace(0.0, float(width), CURVE_SAMPLES + 1, device=x.device, dtype=th.dtype)[:-1]
    dense_y = torch.linspace(0.0, float(height), CURVE_SAMPLES + 1, device=x.device, dtype=tv.dtype)[:-1]
    cor = module.correlation_map(x, (i, j))[0]  # cor_2d(u, ·) (Eq. 6), the module's own method
    dy, dx = _image_per_cell(geometry, feature_size)
    centres_y, centres_x = cell_centres(geometry, feature_size)
    info: dict[str, Any] = {
        "feature_size": feature_size,
        "feature_point": (i, j),
        "feature_point_float": (yf, xf),
        "stride": (dy, dx),  # image pixels per cell
        "valid_size": valid_cells(geometry, feature_size),
        "cell_box": (i * dy, j * dx, (i + 1) * dy, (j + 1) * dx),  # (y0, x0, y1, x1) image pixels
        "cell_centres": (centres_y, centres_x),
        "correlation_map": cor.double().cpu().numpy(),
        "function": function.name,
        "function_label": function.label,
        "theta_hor": _numpy(th),
        "theta_ver": _numpy(tv),
        "param_names": list(function.param_names),
        **_function_entries(function, th, tv),
        "curve_x": _numpy(xs),
        "curve_hor": _numpy(function(th, xs, width)),  # G(θ_u^hor, x) at the pixels (Eq. 5 for dft)
        "curve_y": _numpy(ys),
        "curve_ver": _numpy(function(tv, ys, height)),  # G(θ_u^ver, y)
        # The same functions sampled finely over [0, L), for a continuous line.
        "curve_dense_x": _numpy(dense_x),
        "curve_dense_hor": _numpy(function(th, dense_x, width)),
        "curve_dense_y": _numpy(dense_y),
        "curve_dense_ver": _numpy(function(tv, dense_y, height)),
    }
    return info, th, tv


@torch.no_grad()
def inspect_point(
    model: nn.Module,
    image: Any,
    point: Sequence[int],
    level: str = "p3",
    *,
    image_size: tuple[int, int] | None = None,
    inputs: ModuleInputs | None = None,
) -> dict[str, Any]:
    """SCM and ICM correlations of the pixel ``point = (row, col)`` at FPN ``level`` (see module doc).

    Args:
        model: a CFNet (any ablation; missing modules give a note instead of data).
        image: 3×H×W float in [0, 1] (or H×W×3 uint8), the image fed to the model.
        point: pixel ``(row, col)`` in the image — or, with ``image_size``, in the pixels of the
            original image of that size that ``image`` was resized from.
        level: ``"p2"`` … ``"p6"``.
        inputs: the :func:`module_inputs` of this image, to reuse across clicks.

    Returns a dict with ``level``, ``point``, ``image_size``, ``input_size``, ``padded_size``,
    ``feature_size`` / ``feature_point`` (the FPN level's map and the point's cell on it), and
    ``scm`` / ``icm``: a dict of numpy arrays (see the module docstring) or ``None`` together with
    ``scm_note`` / ``icm_note`` saying why.
    """
    level = _level_name(level)
    if inputs is None:
        inputs = module_inputs(model, image, image_size)
    geometry = inputs.geometry
    point = _check_point(point, geometry.image_size)
    fpn = inputs.fpn[level]
    fpn_size = (int(fpn.shape[-2]), int(fpn.shape[-1]))
    cell, _ = feature_cell(point, geometry, fpn_size)
    result: dict[str, Any] = {
        "level": level,
        "point": point,
        "image_size": geometry.image_size,
        "input_size": geometry.input_size,
        "padded_size": geometry.padded_size,
        "feature_size": fpn_size,
        "feature_point": cell,
        "scm": None,
        "icm": None,
        "scm_note": inputs.scm_note,
        "icm_note": inputs.icm_note,
    }
    if inputs.scm:
        if level in inputs.scm:
            scm = model.semantic_head.module
            x = inputs.scm[level]
            info, _, _ = _common(scm, x, point, geometry)
            row_w, col_w = scm.axial_weights(x, info["feature_point"])  # softmax weights of Eq. 9
            info["row_weights"] = row_w[0].double().cpu().numpy()
            info["col_weights"] = col_w[0].double().cpu().numpy()
            info["mode"] = scm.mode
            result["scm"] = info
        else:
            result["scm_note"] = (
                f"The SCM runs on {', '.join(k.upper() for k in inputs.scm)} only; "
                f"{level.upper()} has no semantic correlation."
            )
    if inputs.icm:
        if level in inputs.icm:
            icm = model.instance_head.position
            x = inputs.icm[level]
            info, th, tv = _common(icm, x, point, geometry)
            height, width = info["feature_size"]
            ref_ys, ref_xs = icm.reference_points(height, width, device=x.device, dtype=th.dtype)
            # c_u of Eq. 10 for this pixel: cor_2d(u, P_ab), a = row, b = column of the grid.
            refs = correlation_2d(th, tv, ref_xs, ref_ys, width, height, icm.function)
            info["references"] = refs.double().cpu().numpy()
            info["reference_ys"] = ref_ys.double().cpu().numpy()
            info["reference_xs"] = ref_xs.double().cpu().numpy()
            dy, dx = info["stride"]
            # Reference points sit at cell-centre coordinates p (pixel index); their centre is p + ½.
            info["reference_ys_image"] = (info["reference_ys"] + 0.5) * dy
            info["reference_xs_image"] = (info["reference_xs"] + 0.5) * dx
            info["input_stride"] = _stride_note(x, fpn)
            result["icm"] = info
        else:
            levels = ", ".join(k.upper() for k in inputs.icm)
            result["icm_note"] = (
                f"The instance branch of this model runs the ICM on {levels} only "
                f"(model.instance.num_grids has {len(inputs.icm)} levels); {level.upper()} has no "
                "instance correlation."
            )
    return result


def _stride_note(x: Tensor, fpn: Tensor) -> str | None:
    if tuple(x.shape[-2:]) == tuple(fpn.shape[-2:]):
        return None
    return (
        f"SOLOv2 resizes this level from {tuple(fpn.shape[-2:])} to {tuple(x.shape[-2:])} before the "
        "instance branch; the ICM runs on the resized map."
    )
