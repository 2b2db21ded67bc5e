"""What SCM and ICM learned for one pixel: the model-side logic of the demo's click-to-inspect.

``inspect_point(model, image, point=(row, col), level="p3")`` returns a :class:`PointInspection`
for the pixel ``u`` of the image at ``point`` and the FPN level ``level``: the point, the level,
the :class:`Geometry` of the image, the level's cell holding ``u``, and two typed views —

- ``.scm``, a :class:`ScmView` (P2–P5; ``None`` with ``.scm_note`` saying why when the model's
  semantic module is not an SCM): the 2-D correlation map cor_2d(u, ·) of Eq. 6 over the level's
  map, the row and column softmax weights of the axial aggregation (Eq. 9, axes as DESIGN §2
  fixes them), θ_u^hor / θ_u^ver and the 1-D functions G(θ_u^hor, x), G(θ_u^ver, y) (Eq. 5 for
  ``dft``);
- ``.icm``, an :class:`IcmView` (the levels the instance branch uses, P2 … P(1+len(num_grids));
  ``None`` with ``.icm_note`` when the position module is not an ICM): cor_2d(u, ·) over the
  whole map, the S_y×S_x correlations c_u with the reference points (Eq. 10) and those points'
  positions, θ and the curves.

Everything about G goes through the module's own correlation function (``module.function``, a
:class:`cfnet.correlation.CorrelationFunction`): the :class:`Curves` are its values,
``param_names`` its names for θ's entries, and ``parameter_groups`` its :meth:`describe` of θ as
:class:`ParameterGroup` s (for ``dft`` amplitudes A0..AN and phases ψ1..ψN; for ``gaussian``
amplitudes and widths); ``view.group("phases").ver`` picks one.

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
into the map. Every array in the views is numpy (float64) so callers need no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
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
    "ParameterGroup",
    "Curves",
    "CorrelationView",
    "ScmView",
    "IcmView",
    "PointInspection",
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


# ----------------------------------------------------------------------------------------------
# what inspect_point returns: typed views (numpy only)


@dataclass(frozen=True, eq=False)
class ParameterGroup:
    """One group of θ's numbers, as the correlation function's ``describe`` names them, both axes."""

    key: str  # "amplitudes", "phases", "widths", …
    title: str
    labels: list[str]  # one per value ("A0", "ψ1", …)
    unit: str
    hor: np.ndarray  # the group's values in θ_u^hor
    ver: np.ndarray  # … and in θ_u^ver


@dataclass(frozen=True, eq=False)
class Curves:
    """The 1-D functions of u: G(θ_u^hor, x) along the row and G(θ_u^ver, y) along the column.

    ``x`` / ``y`` are the feature map's pixel coordinates and ``hor`` / ``ver`` the function there
    (Eq. 5 for ``dft``); the ``dense_*`` arrays sample the same functions finely over ``[0, L)``
    for a continuous line (``None`` when only the pixels were evaluated).
    """

    x: np.ndarray
    hor: np.ndarray
    y: np.ndarray
    ver: np.ndarray
    dense_x: np.ndarray | None = None
    dense_hor: np.ndarray | None = None
    dense_y: np.ndarray | None = None
    dense_ver: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class CorrelationView:
    """What one correlation module (SCM or ICM) computes for the pixel u on the map it sees."""

    feature_size: tuple[int, int]  # (h, w) of the map the module runs on
    feature_point: tuple[int, int]  # u's cell (i, j) on it
    feature_point_float: tuple[float, float]  # u's centre on it, in cell units
    stride: tuple[float, float]  # image pixels per cell (y, x)
    valid_size: tuple[int, int]  # rows / columns of cells that overlap the image (not only padding)
    cell_box: tuple[float, float, float, float]  # u's cell (y0, x0, y1, x1) in image pixels
    cell_centres: tuple[np.ndarray, np.ndarray]  # centres of the cell rows / columns, image pixels
    correlation_map: np.ndarray  # cor_2d(u, ·) (Eq. 6) over the whole map, (h, w)
    function: str  # the correlation function's registered name ("dft", "gaussian", …)
    function_label: str  # its formula, for figure titles
    theta_hor: np.ndarray
    theta_ver: np.ndarray
    param_names: list[str]  # the function's names for θ's entries
    parameter_groups: tuple[ParameterGroup, ...]  # the function's describe() of θ, both axes
    curves: Curves

    def group(self, key: str) -> ParameterGroup:
        """The parameter group ``key`` (``"amplitudes"``, ``"phases"`` …); KeyError when absent."""
        for g in self.parameter_groups:
            if g.key == key:
                return g
        raise KeyError(
            f"{self.function!r} has no parameter group {key!r}; it has "
            f"{', '.join(g.key for g in self.parameter_groups) or 'none'}"
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the view by a dotted name (``"curves.hor"``, ``"amplitudes.ver"``, …)."""
        out: dict[str, np.ndarray] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                out[f.name] = value
            elif f.name == "cell_centres":
                out["cell_centres.y"], out["cell_centres.x"] = value
            elif isinstance(value, Curves):
                out.update({f"curves.{c.name}": getattr(value, c.name) for c in fields(value)})
            elif f.name == "parameter_groups":
                for g in value:
                    out[f"{g.key}.hor"], out[f"{g.key}.ver"] = g.hor, g.ver
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True, eq=False)
class ScmView(CorrelationView):
    """The SCM at u: the correlation view plus the Eq. 9 softmax weights along u's row and column."""

    row_weights: np.ndarray  # (w,) softmax_v G(θ_u^hor, v_x)
    col_weights: np.ndarray  # (h,) softmax_v G(θ_u^ver, v_y)
    mode: str  # the SCM's aggregation ("axial" / "global")


@dataclass(frozen=True, eq=False)
class IcmView(CorrelationView):
    """The ICM at u: the correlation view plus c_u, u's correlations with the reference points."""

    references: np.ndarray  # (S_y, S_x): cor_2d(u, P_ab) (Eq. 10)
    reference_ys: np.ndarray  # the reference points' rows / columns on the map (pixel index)
    reference_xs: np.ndarray
    reference_ys_image: np.ndarray  # … and their centres in image pixels
    reference_xs_image: np.ndarray
    input_stride: str | None  # a note when SOLOv2 resized the level before the ICM, else None


@dataclass(frozen=True, eq=False)
class PointInspection:
    """:func:`inspect_point`'s answer: where the pixel is, and what SCM and ICM compute there."""

    level: str  # "p2" … "p6"
    point: tuple[int, int]  # (row, col) in the pixels of the image of size geometry.image_size
    geometry: Geometry
    feature_size: tuple[int, int]  # the FPN level's map
    feature_point: tuple[int, int]  # the point's cell on it
    scm: ScmView | None = None
    icm: IcmView | None = None
    scm_note: str | None = None  # why ``scm`` is None (no SCM in the model, or not at this level)
    icm_note: str | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        return self.geometry.image_size

    @property
    def input_size(self) -> tuple[int, int]:
        return self.geometry.input_size

    @property
    def padded_size(self) -> tuple[int, int]:
        return self.geometry.padded_size


def _level_name(level: str) -> str:
    name = str(level).lower()
    if name not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)} (FPN levels), got {level!r}")
    return name


# Samples of the continuous curves G(θ_u, j), j ∈ [0, L), for drawing them smoothly.
CURVE_SAMPLES = 256


def _numpy(t: Tensor) -> np.ndarray:
    return t.double().cpu().numpy()


def _parameter_groups(function: CorrelationFunction, th: Tensor, tv: Tensor) -> tuple[ParameterGroup, ...]:
    """θ of both axes as the function itself describes it (names, groups of numbers)."""
    return tuple(
        ParameterGroup(
            key=g_hor.key,
            title=g_hor.title,
            labels=list(g_hor.labels),
            unit=g_hor.unit,
            hor=_numpy(g_hor.values),
            ver=_numpy(g_ver.values),
        )
        for g_hor, g_ver in zip(function.describe(th), function.describe(tv))
    )


def _common(
    module: nn.Module, x: Tensor, point: Sequence[int], geometry: Geometry
) -> tuple[dict[str, Any], Tensor, Tensor]:
    """The :class:`CorrelationView` fields shared by SCM and ICM for the map ``x`` the module sees."""
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
    common: dict[str, Any] = {
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
        "parameter_groups": _parameter_groups(function, th, tv),
        "curves": Curves(
            x=_numpy(xs),
            hor=_numpy(function(th, xs, width)),  # G(θ_u^hor, x) at the pixels (Eq. 5 for dft)
            y=_numpy(ys),
            ver=_numpy(function(tv, ys, height)),  # G(θ_u^ver, y)
            # The same functions sampled finely over [0, L), for a continuous line.
            dense_x=_numpy(dense_x),
            dense_hor=_numpy(function(th, dense_x, width)),
            dense_y=_numpy(dense_y),
            dense_ver=_numpy(function(tv, dense_y, height)),
        ),
    }
    return common, th, tv


@torch.no_grad()
def inspect_point(
    model: nn.Module,
    image: Any,
    point: Sequence[int],
    level: str = "p3",
    *,
    image_size: tuple[int, int] | None = None,
    inputs: ModuleInputs | None = None,
) -> PointInspection:
    """SCM and ICM correlations of the pixel ``point = (row, col)`` at FPN ``level`` (see module doc).

    Args:
        model: a CFNet (any ablation; missing modules give a note instead of data).
        image: 3×H×W float in [0, 1] (or H×W×3 uint8), the image fed to the model.
        point: pixel ``(row, col)`` in the image — or, with ``image_size``, in the pixels of the
            original image of that size that ``image`` was resized from.
        level: ``"p2"`` … ``"p6"``.
        inputs: the :func:`module_inputs` of this image, to reuse across clicks.

    Returns a :class:`PointInspection`: ``level``, ``point``, ``geometry`` (with ``image_size``,
    ``input_size``, ``padded_size``), ``feature_size`` / ``feature_point`` (the FPN level's map
    and the point's cell on it), and ``scm`` / ``icm``: a :class:`ScmView` / :class:`IcmView`, or
    ``None`` together with ``scm_note`` / ``icm_note`` saying why.
    """
    level = _level_name(level)
    if inputs is None:
        inputs = module_inputs(model, image, image_size)
    geometry = inputs.geometry
    point = _check_point(point, geometry.image_size)
    fpn = inputs.fpn[level]
    fpn_size = (int(fpn.shape[-2]), int(fpn.shape[-1]))
    cell, _ = feature_cell(point, geometry, fpn_size)
    scm_view = icm_view = None
    scm_note, icm_note = inputs.scm_note, inputs.icm_note
    if inputs.scm:
        if level in inputs.scm:
            scm = model.semantic_head.module
            x = inputs.scm[level]
            common, _, _ = _common(scm, x, point, geometry)
            row_w, col_w = scm.axial_weights(x, common["feature_point"])  # softmax weights of Eq. 9
            scm_view = ScmView(
                **common,
                row_weights=row_w[0].double().cpu().numpy(),
                col_weights=col_w[0].double().cpu().numpy(),
                mode=scm.mode,
            )
        else:
            scm_note = (
                f"The SCM runs on {', '.join(k.upper() for k in inputs.scm)} only; "
                f"{level.upper()} has no semantic correlation."
            )
    if inputs.icm:
        if level in inputs.icm:
            icm = model.instance_head.position
            x = inputs.icm[level]
            common, th, tv = _common(icm, x, point, geometry)
            height, width = common["feature_size"]
            ref_ys, ref_xs = icm.reference_points(height, width, device=x.device, dtype=th.dtype)
            # c_u of Eq. 10 for this pixel: cor_2d(u, P_ab), a = row, b = column of the grid.
            refs = correlation_2d(th, tv, ref_xs, ref_ys, width, height, icm.function)
            reference_ys = ref_ys.double().cpu().numpy()
            reference_xs = ref_xs.double().cpu().numpy()
            dy, dx = common["stride"]
            icm_view = IcmView(
                **common,
                references=refs.double().cpu().numpy(),
                reference_ys=reference_ys,
                reference_xs=reference_xs,
                # Reference points sit at cell-centre coordinates p (pixel index); their centre is p + ½.
                reference_ys_image=(reference_ys + 0.5) * dy,
                reference_xs_image=(reference_xs + 0.5) * dx,
                input_stride=_stride_note(x, fpn),
            )
        else:
            levels = ", ".join(k.upper() for k in inputs.icm)
            icm_note = (
                f"The instance branch of this model runs the ICM on {levels} only "
                f"(model.instance.num_grids has {len(inputs.icm)} levels); {level.upper()} has no "
                "instance correlation."
            )
    return PointInspection(
        level=level,
        point=point,
        geometry=geometry,
        feature_size=fpn_size,
        feature_point=cell,
        scm=scm_view,
        icm=icm_view,
        scm_note=scm_note,
        icm_note=icm_note,
    )


def _stride_note(x: Tensor, fpn: Tensor) -> str | None:
    if tuple(x.shape[-2:]) == tuple(fpn.shape[-2:]):
        return None
    return (
        f"SOLOv2 resizes this level from {tuple(fpn.shape[-2:])} to {tuple(x.shape[-2:])} before the "
        "instance branch; the ICM runs on the resized map."
    )
