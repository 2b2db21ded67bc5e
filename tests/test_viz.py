"""Overlays, colour maps and the plotly figures of cfnet.viz (overlays, figures)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from cfnet import viz
from cfnet.categories import Categories
from cfnet.correlation import correlation_1d
from cfnet.viz import overlays


@pytest.fixture(scope="module")
def cats() -> Categories:
    return Categories.from_spec("shapes")


def _scene():
    """A 40×60 scene: stuff id 1 (top), stuff id 2 (bottom), two touching circles 3 and 4, void 0."""
    seg = np.zeros((40, 60), dtype=np.int64)
    seg[:20] = 1
    seg[20:] = 2
    seg[10:30, 10:20] = 3
    seg[10:30, 20:30] = 4  # touches 3 along column 20
    seg[35:, 50:] = 0  # void corner
    info = [
        {"id": 1, "category_id": 4, "isthing": 0, "score": 1.0, "area": 0},
        {"id": 2, "category_id": 5, "isthing": 0, "score": 1.0, "area": 0},
        {"id": 3, "category_id": 1, "isthing": 1, "score": 0.9, "area": 200},
        {"id": 4, "category_id": 1, "isthing": 1, "score": 0.8, "area": 200},
    ]
    image = np.full((40, 60, 3), 100, dtype=np.uint8)
    return image, seg, info


def test_overlay_colours_stuff_things_void_and_outlines(cats):
    image, seg, info = _scene()
    out = viz.panoptic_overlay(image, seg, info, cats, alpha=0.5, outlines=True)
    assert out.shape == image.shape and out.dtype == np.uint8
    # stuff interior: the exact blend with its category colour
    expected = np.round(0.5 * 100 + 0.5 * np.array(cats.color(cats.contiguous(4))))
    np.testing.assert_array_equal(out[2, 40], expected)
    # void stays the image (away from the outline)
    np.testing.assert_array_equal(out[39, 59], image[39, 59])
    # two touching instances of one category get different colours
    assert not np.array_equal(out[15, 14], out[15, 25])
    # the first instance of a category is drawn in the category colour itself, a bit more opaque
    a = 0.5 + overlays._THING_ALPHA_BOOST
    expected_thing = np.round((1 - a) * 100 + a * np.array(cats.color(cats.contiguous(1))))
    np.testing.assert_array_equal(out[15, 14], expected_thing)
    # outlines: the boundary between the two instances is white, between stuff classes dark
    np.testing.assert_array_equal(out[15, 20], [255, 255, 255])
    np.testing.assert_array_equal(out[19, 40], [40, 40, 40])
    plain = viz.panoptic_overlay(image, seg, info, cats, outlines=False)
    assert not np.array_equal(plain[15, 20], [255, 255, 255])


def test_instance_shades_are_distinct(cats):
    coco = Categories.from_spec("coco")
    for categories in (cats, coco):
        for c in range(categories.num_things):
            info = [{"id": k + 1, "category_id": categories.category_id(c), "isthing": 1} for k in range(8)]
            colors = np.array(list(viz.segment_colors(info, categories).values()), dtype=np.float64)
            d = np.linalg.norm(colors[:, None] - colors[None], axis=-1)
            np.fill_diagonal(d, np.inf)
            assert d.min() > 20, (categories.name(c), colors)


def test_overlay_rejects_bad_input(cats):
    image, seg, info = _scene()
    with pytest.raises(ValueError, match="image"):
        viz.panoptic_overlay(image[..., 0], seg, info, cats)
    with pytest.raises(ValueError, match="panoptic_seg"):
        viz.panoptic_overlay(image, seg[:10], info, cats)
    with pytest.raises(ValueError, match="uint8"):
        viz.panoptic_overlay(image.astype(np.float32), seg, info, cats)


def test_semantic_color_map(cats):
    probs = np.zeros((len(cats), 4, 5))
    probs[3, :2] = 1.0
    probs[5, 2:] = 1.0
    out = viz.semantic_color_map(probs, cats)
    np.testing.assert_array_equal(out[0, 0], cats.color(3))
    np.testing.assert_array_equal(out[3, 4], cats.color(5))
    labels = np.array([[0, 255], [1, 2]])
    out = viz.semantic_color_map(torch.as_tensor(labels), cats)
    np.testing.assert_array_equal(out[0, 1], [0, 0, 0])
    blended = viz.semantic_color_map(probs, cats, image=np.zeros((4, 5, 3), np.uint8), alpha=0.5)
    np.testing.assert_array_equal(blended[0, 0], np.round(0.5 * np.array(cats.color(3))))
    with pytest.raises(ValueError, match="channels"):
        viz.semantic_color_map(np.zeros((2, 4, 5)), cats)


def test_highlight_segment(cats):
    image, seg, info = _scene()
    out = viz.highlight_segment(image, seg, 3, point=(15, 14))
    assert out[2, 40].max() < 100  # outside the segment: dimmed
    np.testing.assert_array_equal(out[26, 12], image[26, 12])  # inside and away from edge / cross
    assert (out[10:30, 10:20] == [255, 230, 0]).all(axis=-1).any()  # yellow outline
    np.testing.assert_array_equal(out[15, 14], [255, 255, 255])  # the cross' centre


def test_correlation_heatmap_figure_geometry():
    values = np.arange(12, dtype=np.float64).reshape(3, 4) - 5
    image = np.zeros((30, 40, 3), dtype=np.uint8)
    fig = viz.correlation_heatmap_figure(values, image=image, point=(12, 17), title="t", cell_size=(10, 10))
    assert isinstance(fig, go.Figure)
    heat = [t for t in fig.data if t.type == "heatmap"][0]
    np.testing.assert_array_equal(np.asarray(heat.z), values)
    assert (heat.x0, heat.dx, heat.y0, heat.dy) == (5, 10, 5, 10)
    assert heat.zmin == -heat.zmax  # signed correlations, centred colour range
    assert any(t.type == "image" for t in fig.data)
    marks = [t for t in fig.data if t.type == "scatter" and t.name == "clicked point"]
    assert marks and marks[0].x == (17.5,) and marks[0].y == (12.5,)
    assert "pixels" in fig.layout.xaxis.title.text and "pixels" in fig.layout.yaxis.title.text
    assert tuple(fig.layout.yaxis.range) == (30, 0)  # y down, as in the image
    assert "feature cell" in heat.hovertemplate
    fig.to_json()  # serialisable (what gr.Plot sends)
    with pytest.raises(ValueError, match="2-D"):
        viz.correlation_heatmap_figure(np.zeros(5))


def test_axial_weights_figure():
    rw, cw = np.full(8, 1 / 8), np.full(6, 1 / 6)
    fig = viz.axial_weights_figure(
        rw, cw, row_positions=np.arange(8) * 4 + 2, col_positions=np.arange(6) * 4 + 2, point=(5, 9)
    )
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 2
    np.testing.assert_allclose(bars[0].y, rw)
    np.testing.assert_allclose(bars[1].x, np.arange(6) * 4 + 2)
    assert "image pixels" in fig.layout.xaxis.title.text


def test_fourier_curves_match_eq5():
    torch.manual_seed(0)
    th, tv = torch.randn(11, dtype=torch.float64), torch.randn(11, dtype=torch.float64)
    fig = viz.fourier_curves_figure(th, tv, width=9, height=7, point=(3, 4), stride=(8, 8))
    dots = [t for t in fig.data if t.type == "scatter" and t.mode == "markers"]
    np.testing.assert_allclose(
        dots[0].y, correlation_1d(th, torch.arange(9.0, dtype=torch.float64), 9).numpy()
    )
    np.testing.assert_allclose(
        dots[1].y, correlation_1d(tv, torch.arange(7.0, dtype=torch.float64), 7).numpy()
    )
    bars = [t for t in fig.data if t.type == "bar"]
    np.testing.assert_allclose(bars[0].y, th[:6].numpy())  # A0..A5 of θ^hor
    np.testing.assert_allclose(bars[3].y, tv[6:].numpy())  # ψ1..ψ5 of θ^ver
    assert "pixels" in fig.layout.xaxis.title.text
    with pytest.raises(ValueError, match="2N\\+1"):
        viz.fourier_curves_figure(np.zeros(4), np.zeros(4), 5, 5)


def test_reference_grid_and_note_figures():
    grid = np.random.default_rng(0).normal(size=(4, 4))
    ys = xs = (np.arange(4) + 0.5) * 8
    fig = viz.reference_grid_figure(grid, ys, xs, image=np.zeros((32, 32, 3), np.uint8))
    heat = [t for t in fig.data if t.type == "heatmap"][0]
    np.testing.assert_allclose(heat.z, grid)
    np.testing.assert_allclose(heat.x, xs)
    with pytest.raises(ValueError, match="reference positions"):
        viz.reference_grid_figure(grid, ys[:3], xs)
    note = viz.note_figure("no SCM in this model")
    assert note.layout.annotations[0].text == "no SCM in this model"
    long = viz.note_figure("word " * 40, width=30)
    assert all(len(line) <= 30 for line in long.layout.annotations[0].text.split("<br>"))


def test_reference_grid_marks_the_point():
    grid = np.zeros((4, 4))
    ys = xs = (np.arange(4) + 0.5) * 8
    fig = viz.reference_grid_figure(grid, ys, xs, image=np.zeros((32, 32, 3), np.uint8), point=(3, 20))
    mark = next(t for t in fig.data if t.name == "clicked point")
    assert (mark.x[0], mark.y[0]) == (20.5, 3.5)
    assert tuple(fig.layout.yaxis.range) == (32, 0)


def test_overlays_need_no_plotly_and_every_name_is_there():
    import subprocess
    import sys

    code = (
        "import sys; from cfnet.viz import panoptic_overlay; assert 'plotly' not in sys.modules; "
        "import cfnet.viz as v; assert all(callable(getattr(v, n)) for n in v.__all__); "
        "assert 'plotly' in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    from cfnet.viz import figures

    assert viz.note_figure is figures.note_figure and viz.panoptic_overlay is overlays.panoptic_overlay
    with pytest.raises(AttributeError):
        viz.no_such_figure  # noqa: B018
