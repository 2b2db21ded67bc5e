"""Plotly figures of the correlations: heatmaps, Eq. 9 weights, 1-D functions, reference grids.

Used by the demo (``app/``) and the notebooks; depends on numpy, Pillow and plotly only (no
gradio; torch only inside :func:`correlation_function_figure`, imported when it is called).

All builders place data in *image pixels* of the image the user sees (x to the right, y
downwards, the origin at the top-left corner of the top-left pixel; pixel ``(row, col)`` covers
``[col, col+1) × [row, row+1)`` and has its centre at ``(col + 0.5, row + 0.5)``). A map computed
on a feature level is drawn as cells of ``cell_size`` image pixels; the cell holding the clicked
point is marked. The 1-D correlation functions G(θ, j) (Eq. 5 for ``dft``) are drawn over the
feature map's own pixel coordinate ``j ∈ [0, L)``, the domain the function is defined on, from
values the correlation function itself computed (:func:`correlation_curves_figure` knows no
formula; :func:`correlation_function_figure` asks the function), with θ shown as the function
describes it.
"""

from __future__ import annotations

import base64
import io
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from cfnet.viz.overlays import _check_image

if TYPE_CHECKING:  # the views are plain dataclasses; importing them at run time would pull in torch
    from cfnet.inspection import Curves, ParameterGroup

__all__ = [
    "note_figure",
    "correlation_heatmap_figure",
    "axial_weights_figure",
    "correlation_curves_figure",
    "correlation_function_figure",
    "fourier_curves_figure",
    "reference_grid_figure",
]

# Background images inside figures are downscaled to this longer side (the maps are coarser anyway)
# so a figure's JSON stays small.
FIGURE_BACKGROUND_SIDE = 384


def _png_data_uri(image: np.ndarray, max_side: int = FIGURE_BACKGROUND_SIDE) -> tuple[str, tuple[int, int]]:
    """A PNG data URI of ``image`` downscaled to ``max_side``, and the size it was encoded at."""
    pil = Image.fromarray(_check_image(image))
    scale = min(1.0, max_side / max(pil.size))
    if scale < 1.0:
        pil = pil.resize(
            (max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.BILINEAR
        )
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), (
        pil.height,
        pil.width,
    )


def _image_trace(image: np.ndarray, height: float, width: float) -> go.Image:
    """The image as a background trace spanning [0, width] × [0, height] image pixels."""
    uri, (h, w) = _png_data_uri(image)
    dx, dy = width / w, height / h
    return go.Image(source=uri, x0=dx / 2, y0=dy / 2, dx=dx, dy=dy, hoverinfo="skip", name="image")


def note_figure(text: str, title: str = "", width: int = 60) -> go.Figure:
    """An empty figure that only says ``text`` (e.g. "this model has no SCM"), wrapped at ``width``."""
    fig = go.Figure()
    fig.add_annotation(
        text="<br>".join(textwrap.wrap(text, width)) or text,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font={"size": 14},
        align="center",
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(
        title=title, height=260, margin={"l": 20, "r": 20, "t": 50, "b": 20}, plot_bgcolor="white"
    )
    return fig


def _as_array(values: Any, ndim: int, name: str) -> np.ndarray:
    """float64 numpy array of ``ndim`` dims from a tensor or array (a leading batch of 1 is dropped)."""
    if hasattr(values, "detach"):
        values = values.detach().double().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == ndim + 1 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {arr.shape}")
    return arr


def correlation_heatmap_figure(
    map: Any,  # noqa: A002 - the name the callers use
    image: np.ndarray | None = None,
    point: tuple[float, float] | None = None,
    title: str = "cor_2d(u, ·)",
    *,
    cell_size: tuple[float, float] | None = None,
    extent: tuple[float, float] | None = None,
    references: tuple[Sequence[float], Sequence[float]] | None = None,
    value_name: str = "cor_2d",
    opacity: float = 0.6,
    colorscale: str = "RdBu_r",
    symmetric: bool = True,
) -> go.Figure:
    """Interactive heatmap of a feature-level map over the image.

    Args:
        map: h×w values; cell ``(i, j)`` covers image pixels ``[i·dy, (i+1)·dy) × [j·dx, (j+1)·dx)``.
        image: uint8 H×W×3 drawn underneath (downscaled for the figure); sets the axes' extent.
        point: ``(row, col)`` of the clicked image pixel, marked with a cross (its centre is drawn
            at ``(col + 0.5, row + 0.5)``).
        cell_size: ``(dy, dx)`` in image pixels; default stretches the map over ``extent``.
        extent: ``(height, width)`` of the image in pixels; default from ``image``, else the map.
        references: ``(ys, xs)`` image-pixel positions of reference points to mark (ICM).
        symmetric: colour range centred on 0 (correlations are signed).

    Hovering shows the value, the feature cell and its centre in image pixels.
    """
    values = _as_array(map, 2, "map")
    h, w = values.shape
    if extent is None:
        extent = (float(image.shape[0]), float(image.shape[1])) if image is not None else (float(h), float(w))
    height, width = float(extent[0]), float(extent[1])
    dy, dx = cell_size if cell_size is not None else (height / h, width / w)
    rows, cols = np.mgrid[0:h, 0:w]
    custom = np.stack([rows, cols], axis=-1)
    zmax = float(np.abs(values).max()) if values.size else 1.0
    heat_kwargs: dict[str, Any] = {}
    if symmetric:
        heat_kwargs.update(zmin=-zmax, zmax=zmax, zmid=0.0)
    fig = go.Figure()
    if image is not None:
        fig.add_trace(_image_trace(image, height, width))
    fig.add_trace(
        go.Heatmap(
            z=values,
            x0=dx / 2,
            dx=dx,
            y0=dy / 2,
            dy=dy,
            customdata=custom,
            colorscale=colorscale,
            opacity=opacity if image is not None else 1.0,
            colorbar={"title": {"text": value_name}},
            hovertemplate=(
                f"{value_name} = %{{z:.4g}}<br>feature cell (row %{{customdata[0]}}, col %{{customdata[1]}})"
                "<br>cell centre x = %{x:.1f} px, y = %{y:.1f} px<extra></extra>"
            ),
            name=value_name,
            **heat_kwargs,
        )
    )
    if references is not None:
        ys, xs = (np.asarray(v, dtype=np.float64) for v in references)
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        fig.add_trace(
            go.Scatter(
                x=gx.ravel(),
                y=gy.ravel(),
                mode="markers",
                marker={"size": 3, "color": "rgba(0,0,0,0.55)"},
                name="reference points",
                hovertemplate="reference point x = %{x:.1f} px, y = %{y:.1f} px<extra></extra>",
            )
        )
    if point is not None:
        _add_point_marker(fig, point)
    fig.update_xaxes(title_text="x (image pixels)", range=[0, width], constrain="domain")
    fig.update_yaxes(
        title_text="y (image pixels)", range=[height, 0], scaleanchor="x", scaleratio=1, constrain="domain"
    )
    fig.update_layout(
        title=title,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        showlegend=False,
        height=420,
        plot_bgcolor="white",
    )
    return fig


def _add_point_marker(fig: go.Figure, point: tuple[float, float], **trace_kwargs: Any) -> None:
    row, col = float(point[0]), float(point[1])
    fig.add_trace(
        go.Scatter(
            x=[col + 0.5],
            y=[row + 0.5],
            mode="markers",
            marker={"symbol": "x-thin", "size": 16, "line": {"width": 3, "color": "black"}},
            name="clicked point",
            hovertemplate=f"clicked pixel (row {int(row)}, col {int(col)})<extra></extra>",
            **trace_kwargs,
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[col + 0.5],
            y=[row + 0.5],
            mode="markers",
            marker={"symbol": "x-thin", "size": 12, "line": {"width": 2, "color": "yellow"}},
            hoverinfo="skip",
            showlegend=False,
            **trace_kwargs,
        )
    )


def axial_weights_figure(
    row_w: Any,
    col_w: Any,
    *,
    row_positions: Sequence[float] | None = None,
    col_positions: Sequence[float] | None = None,
    point: tuple[float, float] | None = None,
    title: str = "SCM axial softmax weights (Eq. 9)",
) -> go.Figure:
    """The two softmax weight vectors of Eq. 9 for one pixel u, as bar charts.

    Left: the weights of the pixels of u's row, softmax_v G(θ_u^hor, v_x), against x. Right: the
    weights of u's column, softmax_v G(θ_u^ver, v_y), against y. Positions are the cells' centres
    in image pixels when given (``row_positions`` for the row's cells, ``col_positions`` for the
    column's), otherwise feature-map pixels; ``point = (row, col)`` in the same units draws the
    pixel's own position as a dashed line. The uniform weight 1/L is drawn for reference.
    """
    rw, cw = _as_array(row_w, 1, "row_w"), _as_array(col_w, 1, "col_w")
    in_pixels = row_positions is not None
    xs = np.asarray(row_positions, dtype=np.float64) if row_positions is not None else np.arange(rw.size)
    ys = np.asarray(col_positions, dtype=np.float64) if col_positions is not None else np.arange(cw.size)
    unit = "image pixels" if in_pixels else "feature-map pixels"
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            "row of u: softmax G(θ<sup>hor</sup>, v<sub>x</sub>)",
            "column of u: softmax G(θ<sup>ver</sup>, v<sub>y</sub>)",
        ),
    )
    fig.add_trace(
        go.Bar(
            x=xs,
            y=rw,
            name="row weights",
            marker_color="#1f77b4",
            hovertemplate="x = %{x:.1f} px<br>weight = %{y:.4g}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=ys,
            y=cw,
            name="column weights",
            marker_color="#d62728",
            hovertemplate="y = %{x:.1f} px<br>weight = %{y:.4g}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    for col, n in ((1, rw.size), (2, cw.size)):
        fig.add_hline(y=1.0 / max(n, 1), line_dash="dot", line_color="gray", row=1, col=col)
    if point is not None:
        fig.add_vline(x=float(point[1]), line_dash="dash", line_color="black", row=1, col=1)
        fig.add_vline(x=float(point[0]), line_dash="dash", line_color="black", row=1, col=2)
    fig.update_xaxes(title_text=f"x ({unit})", row=1, col=1)
    fig.update_xaxes(title_text=f"y ({unit})", row=1, col=2)
    fig.update_yaxes(title_text="softmax weight", row=1, col=1)
    fig.update_layout(title=title, showlegend=False, height=340, margin={"l": 60, "r": 20, "t": 80, "b": 50})
    return fig


def correlation_curves_figure(
    curves: Curves,
    parameter_groups: Sequence[ParameterGroup] = (),
    *,
    point: tuple[float, float] | None = None,
    stride: tuple[float, float] | None = None,
    title: str = "Correlation functions of u",
    function_label: str | None = None,
) -> go.Figure:
    """G(θ_u^hor, x) and G(θ_u^ver, y) over the feature map, and θ as bar charts.

    Draws values computed elsewhere (by the correlation function itself, see
    :mod:`cfnet.correlation`), so it knows nothing about any family's formula:

    - ``curves``: a :class:`cfnet.inspection.Curves` (``view.curves`` of what
      :func:`cfnet.inspection.inspect_point` returns): ``x`` / ``hor`` and ``y`` / ``ver``, the
      functions at the feature-map pixels (dots), and optionally ``dense_x`` / ``dense_hor`` /
      ``dense_y`` / ``dense_ver``, finer samples drawn as a line;
    - ``parameter_groups``: :class:`cfnet.inspection.ParameterGroup` s, one bar chart each, with
      ``title``, ``labels``, ``unit`` and the values ``hor`` / ``ver`` (the function's
      ``describe`` of θ; for ``dft`` amplitudes A0..AN and phases ψ1..ψN).

    ``point = (row, col)`` (feature-map pixels) draws u's own position as a dashed line;
    ``stride = (sy, sx)``, image pixels per feature-map pixel, is printed in the axis titles;
    ``function_label`` (the function's formula) is shown under the title.
    """
    groups = list(parameter_groups)
    rows = 1 + (len(groups) + 1) // 2
    titles = [
        "G(θ<sup>hor</sup><sub>u</sub>, x) along the row",
        "G(θ<sup>ver</sup><sub>u</sub>, y) along the column",
        *(str(g.title) for g in groups),
    ]
    fig = make_subplots(
        rows=rows, cols=2, vertical_spacing=0.3 if rows == 2 else 0.6 / rows, subplot_titles=titles
    )
    for col, axis, color in ((1, "x", "#1f77b4"), (2, "y", "#d62728")):
        name = "hor" if axis == "x" else "ver"
        dense_at, dense = getattr(curves, f"dense_{axis}"), getattr(curves, f"dense_{name}")
        if dense_at is not None:
            fig.add_trace(
                go.Scatter(
                    x=_as_array(dense_at, 1, f"curves.dense_{axis}"),
                    y=_as_array(dense, 1, f"curves.dense_{name}"),
                    mode="lines",
                    line={"color": color},
                    name=f"G(θ^{name}, ·)",
                    hovertemplate="j = %{x:.2f}<br>G = %{y:.4g}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.add_trace(
            go.Scatter(
                x=_as_array(getattr(curves, axis), 1, f"curves.{axis}"),
                y=_as_array(getattr(curves, name), 1, f"curves.{name}"),
                mode="markers",
                marker={"color": color, "size": 5},
                name=f"G(θ^{name}, pixel)",
                hovertemplate="pixel %{x:.0f}<br>G = %{y:.4g}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    if point is not None:
        fig.add_vline(x=float(point[1]), line_dash="dash", line_color="black", row=1, col=1)
        fig.add_vline(x=float(point[0]), line_dash="dash", line_color="black", row=1, col=2)
    for k, group in enumerate(groups):
        row, col = 2 + k // 2, 1 + k % 2
        labels = [str(v) for v in group.labels]
        for name, color in (("hor", "#1f77b4"), ("ver", "#d62728")):
            values = _as_array(getattr(group, name), 1, f"{group.key} {name}")
            if values.size != len(labels):
                raise ValueError(f"parameter group {group.key!r}: {values.size} values, {len(labels)} labels")
            fig.add_trace(
                go.Bar(x=labels, y=values, name=name, marker_color=color, showlegend=k == 0),
                row=row,
                col=col,
            )
        fig.update_yaxes(title_text=str(group.unit), row=row, col=col)
    sx = f", 1 = {stride[1]:.3g} image px" if stride is not None else ""
    sy = f", 1 = {stride[0]:.3g} image px" if stride is not None else ""
    fig.update_xaxes(title_text=f"x (feature-map pixels{sx})", row=1, col=1)
    fig.update_xaxes(title_text=f"y (feature-map pixels{sy})", row=1, col=2)
    fig.update_yaxes(title_text="G", row=1, col=1)
    full_title = title if not function_label else f"{title}<br><sup>{function_label}</sup>"
    fig.update_layout(
        title=full_title,
        barmode="group",
        height=300 + 280 * (rows - 1),
        margin={"l": 60, "r": 20, "t": 90, "b": 50},
        legend={"orientation": "h", "y": -0.12},
    )
    return fig


def correlation_function_figure(
    theta_hor: Any,
    theta_ver: Any,
    width: int,
    height: int,
    *,
    function: Any = None,
    point: tuple[float, float] | None = None,
    stride: tuple[float, float] | None = None,
    title: str | None = None,
    samples: int = 256,
) -> go.Figure:
    """:func:`correlation_curves_figure` of θ_u^hor, θ_u^ver on a ``height × width`` map.

    ``function`` is a :class:`cfnet.correlation.CorrelationFunction`, a registered name (N read
    from θ's size 2N+1) or ``None`` (``dft``, Eq. 5, N read from θ). The curves are the
    function's own values (``samples`` points over ``[0, L)`` and every pixel) and the bars its
    ``describe`` of θ. Needs torch (imported here, so importing this module does not).
    """
    import torch

    from cfnet.correlation import CorrelationFunction, build_correlation_function

    th = torch.as_tensor(_as_array(theta_hor, 1, "theta_hor"))
    tv = torch.as_tensor(_as_array(theta_ver, 1, "theta_ver"))
    if th.numel() != tv.numel():
        raise ValueError(f"theta_hor and theta_ver differ in size: {th.numel()} vs {tv.numel()}")
    if function is None:
        from cfnet.correlation import DFTCorrelation, num_levels_from_theta

        function = DFTCorrelation(num_levels_from_theta(th))
    elif not isinstance(function, CorrelationFunction):
        function = build_correlation_function(function, (th.numel() - 1) // 2)
    from cfnet.inspection import Curves, ParameterGroup

    sampled: dict[str, Any] = {}
    for axis, name, theta, length in (("x", "hor", th, width), ("y", "ver", tv, height)):
        dense = torch.linspace(0.0, float(length), samples + 1, dtype=torch.float64)[:-1]
        grid = torch.arange(int(length), dtype=torch.float64)
        sampled[f"dense_{axis}"] = dense.numpy()
        sampled[f"dense_{name}"] = function(theta, dense, float(length)).numpy()
        sampled[axis] = grid.numpy()
        sampled[name] = function(theta, grid, float(length)).numpy()
    curves = Curves(**sampled)
    groups = [
        ParameterGroup(
            key=gh.key, title=gh.title, labels=list(gh.labels), unit=gh.unit, hor=gh.values, ver=gv.values
        )
        for gh, gv in zip(function.describe(th), function.describe(tv))
    ]
    return correlation_curves_figure(
        curves,
        groups,
        point=point,
        stride=stride,
        title=title or f"Correlation functions of u ({function.name})",
        function_label=function.label,
    )


def fourier_curves_figure(
    theta_hor: Any,
    theta_ver: Any,
    width: int,
    height: int,
    *,
    point: tuple[float, float] | None = None,
    stride: tuple[float, float] | None = None,
    title: str = "Fourier correlation functions of u (Eq. 5)",
    samples: int = 256,
    function: Any = None,
) -> go.Figure:
    """:func:`correlation_function_figure`, by its earlier name (default: ``dft``, Eq. 5)."""
    return correlation_function_figure(
        theta_hor,
        theta_ver,
        width,
        height,
        function=function,
        point=point,
        stride=stride,
        title=title,
        samples=samples,
    )


def reference_grid_figure(
    values: Any,
    ref_ys: Sequence[float] | None = None,
    ref_xs: Sequence[float] | None = None,
    *,
    title: str = "ICM: correlations with the S×S reference points (Eq. 10)",
    image: np.ndarray | None = None,
    extent: tuple[float, float] | None = None,
    point: tuple[float, float] | None = None,
) -> go.Figure:
    """The S_y×S_x vector c_u of Eq. 10 as a heatmap at the reference points' positions.

    ``values[a, b]`` is cor_2d(u, P_ab); ``ref_ys``/``ref_xs`` the reference points' positions in
    image pixels (default: indices). With ``image`` the grid is drawn over it; ``point = (row,
    col)`` (image pixels) marks the pixel u the correlations belong to.
    """
    grid = _as_array(values, 2, "values")
    s_y, s_x = grid.shape
    in_pixels = ref_ys is not None and ref_xs is not None
    ys = np.asarray(ref_ys, dtype=np.float64) if in_pixels else np.arange(s_y, dtype=np.float64)
    xs = np.asarray(ref_xs, dtype=np.float64) if in_pixels else np.arange(s_x, dtype=np.float64)
    if ys.size != s_y or xs.size != s_x:
        raise ValueError(f"values are {s_y}×{s_x} but got {ys.size} y and {xs.size} x reference positions")
    a, b = np.mgrid[0:s_y, 0:s_x]
    zmax = float(np.abs(grid).max()) if grid.size else 1.0
    fig = go.Figure()
    if image is not None and in_pixels:
        height, width = extent if extent is not None else image.shape[:2]
        fig.add_trace(_image_trace(image, float(height), float(width)))
    fig.add_trace(
        go.Heatmap(
            z=grid,
            x=xs,
            y=ys,
            customdata=np.stack([a, b], axis=-1),
            colorscale="RdBu_r",
            zmin=-zmax,
            zmax=zmax,
            zmid=0.0,
            opacity=0.75 if image is not None else 1.0,
            colorbar={"title": {"text": "cor_2d"}},
            hovertemplate=(
                "cor_2d(u, P) = %{z:.4g}<br>reference (a %{customdata[0]}, b %{customdata[1]})"
                "<br>at x = %{x:.1f}, y = %{y:.1f}<extra></extra>"
            ),
        )
    )
    if point is not None:
        _add_point_marker(fig, point)
    unit = "image pixels" if in_pixels else "reference index"
    fig.update_xaxes(title_text=f"reference x ({unit})", constrain="domain")
    fig.update_yaxes(
        title_text=f"reference y ({unit})",
        autorange="reversed",
        scaleanchor="x",
        scaleratio=1,
        constrain="domain",
    )
    if image is not None and in_pixels:
        height, width = extent if extent is not None else image.shape[:2]
        fig.update_xaxes(range=[0, float(width)], autorange=False)
        fig.update_yaxes(range=[float(height), 0], autorange=False)
    fig.update_layout(
        title=title,
        height=420,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        plot_bgcolor="white",
        showlegend=False,
    )
    return fig
