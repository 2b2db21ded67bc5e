"""What the demo shows for a clicked pixel: six plotly figures and a Markdown summary.

Built from :func:`cfnet.inspection.inspect_point`'s typed views and drawn with
:mod:`cfnet.viz.figures`; the curves and bars come from the model's own correlation function, so
nothing here assumes a family.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.images import LoadedImage

if TYPE_CHECKING:  # cfnet.inspection imports torch; the app loads it lazily
    from cfnet.inspection import CorrelationView, PointInspection


def inspection_figures(data: PointInspection, loaded: LoadedImage) -> tuple[Any, ...]:
    """``(scm_map, scm_weights, scm_curves, icm_map, icm_references, icm_curves)`` for ``data``;
    a note figure stands in where the model has no such module or level."""
    from cfnet.viz.figures import (
        axial_weights_figure,
        correlation_curves_figure,
        correlation_heatmap_figure,
        note_figure,
        reference_grid_figure,
    )

    level = data.level.upper()
    point = data.point
    extent = loaded.original_size
    background = loaded.array

    def heatmap(view: CorrelationView, title: str, references: bool = False):
        vr, vc = view.valid_size
        refs = None
        if references:
            refs = (view.reference_ys_image, view.reference_xs_image)
        return correlation_heatmap_figure(
            view.correlation_map[:vr, :vc],
            image=background,
            point=point,
            title=title,
            cell_size=view.stride,
            extent=extent,
            references=refs,
        )

    def curves(view: CorrelationView, title: str):
        # Curves and bars come from the model's own correlation function (cfnet.inspection asked it):
        # nothing here assumes a family.
        return correlation_curves_figure(
            view.curves,
            view.parameter_groups,
            point=view.feature_point,
            stride=view.stride,
            title=f"{title} ({view.function})",
            function_label=view.function_label,
        )

    scm, icm = data.scm, data.icm
    if scm is not None:
        ys, xs = scm.cell_centres
        fi, fj = scm.feature_point
        scm_figs = (
            heatmap(scm, f"SCM: cor₂d(u, ·) at {level} ({scm.feature_size[0]}×{scm.feature_size[1]})"),
            axial_weights_figure(
                scm.row_weights,
                scm.col_weights,
                row_positions=xs,
                col_positions=ys,
                point=(ys[fi], xs[fj]),
                title=f"SCM: softmax weights of Eq. 9 along u's row and column ({level})",
            ),
            curves(
                scm,
                f"SCM: G(θ<sub>u</sub><sup>hor</sup>, x) and G(θ<sub>u</sub><sup>ver</sup>, y) at {level}",
            ),
        )
    else:
        note = data.scm_note or "No SCM data."
        scm_figs = (
            note_figure(note, "SCM: cor₂d(u, ·)"),
            note_figure(note, "SCM: Eq. 9 weights"),
            note_figure(note, "SCM: correlation functions"),
        )
    if icm is not None:
        refs = icm.references
        icm_figs = (
            heatmap(
                icm,
                f"ICM: cor₂d(u, ·) at {level} ({icm.feature_size[0]}×{icm.feature_size[1]})",
                references=True,
            ),
            reference_grid_figure(
                refs,
                icm.reference_ys_image,
                icm.reference_xs_image,
                image=background,
                extent=extent,
                point=point,
                title=(
                    f"ICM: c<sub>u</sub>, correlations with the {refs.shape[0]}×{refs.shape[1]} "
                    "reference points (Eq. 10)"
                ),
            ),
            curves(
                icm,
                f"ICM: G(θ<sub>u</sub><sup>hor</sup>, x) and G(θ<sub>u</sub><sup>ver</sup>, y) at {level}",
            ),
        )
    else:
        note = data.icm_note or "No ICM data."
        icm_figs = (
            note_figure(note, "ICM: cor₂d(u, ·)"),
            note_figure(note, "ICM: reference points"),
            note_figure(note, "ICM: correlation functions"),
        )
    return scm_figs + icm_figs


def info_markdown(
    data: PointInspection, loaded: LoadedImage, segment: dict | None, categories: Any, name: str
) -> str:
    """The summary under the figures: the pixel, its segment, and each module's cell and function."""
    row, col = data.point
    (oh, ow), (h, w) = loaded.original_size, loaded.size
    lines = [f"**Pixel** row {row}, col {col} of the image ({ow} wide × {oh} high; checkpoint *{name}*)."]
    if loaded.downscaled:
        lines.append(f"The model saw the image downscaled to {w} × {h}.")
    if segment is None:
        lines.append("**Segment:** void (no segment at this pixel).")
    else:
        cat = categories.contiguous(segment["category_id"])
        kind = "thing" if segment.get("isthing", categories.is_thing(cat)) else "stuff"
        lines.append(
            f"**Segment:** {categories.name(cat)} ({kind}), id {segment['id']}, "
            f"score {float(segment['score']):.3f}, area {int(segment['area'])} px."
        )
    level = data.level.upper()
    views: tuple[tuple[str, CorrelationView | None, str | None], ...] = (
        ("SCM", data.scm, data.scm_note),
        ("ICM", data.icm, data.icm_note),
    )
    for label, view, note in views:
        if view is None:
            lines.append(f"**{label}:** {note}")
            continue
        fh, fw = view.feature_size
        fi, fj = view.feature_point
        sy, sx = view.stride
        text = (
            f"**{label} at {level}:** map {fh}×{fw}, pixel → cell (row {fi}, col {fj}); one cell = "
            f"{sy:.2f}×{sx:.2f} image pixels. Correlation function G: `{view.function}`."
        )
        if label == "ICM" and view.input_stride:  # an IcmView
            text += " " + view.input_stride
        lines.append(text)
    return "\n\n".join(lines)
