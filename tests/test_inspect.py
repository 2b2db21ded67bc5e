"""cfnet.inspection: coordinate mapping (pixel centres) and per-pixel SCM / ICM data vs the modules."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

import cfnet
from cfnet.correlation import correlation_1d
from cfnet.inspection import (
    Curves,
    Geometry,
    IcmView,
    ParameterGroup,
    PointInspection,
    ScmView,
    cell_centres,
    feature_cell,
    inspect_point,
    map_point,
    module_inputs,
    valid_cells,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------------------------
# coordinate mapping


def test_integer_scale_maps_every_pixel_to_its_block():
    # 64×96 image, resized ×2 to 128×192 (no padding), stride-8 map: 4×4 image pixels per cell.
    g = Geometry((64, 96), (128, 192), (128, 192))
    for r in range(64):
        for c in range(96):
            assert feature_cell((r, c), g, (16, 24))[0] == (r // 4, c // 4)


def _cell_by_interval(point, g: Geometry, size):
    """Literal form of the convention: the cell whose image-space interval holds the pixel centre."""
    out = []
    for axis in (0, 1):
        centre = Fraction(2 * point[axis] + 1, 2)  # pixel centre, original image
        per_cell = Fraction(g.padded_size[axis], size[axis]) * Fraction(
            g.image_size[axis], g.input_size[axis]
        )
        hits = [i for i in range(size[axis]) if i * per_cell <= centre < (i + 1) * per_cell]
        assert len(hits) == 1
        out.append(hits[0])
    return tuple(out)


@pytest.mark.parametrize(
    "geometry,size",
    [
        (Geometry((427, 640), (128, 192), (128, 192)), (16, 24)),  # COCO image, model resize
        (Geometry((300, 301), (128, 128), (128, 128)), (4, 4)),  # non-integer ratios
        (Geometry((100, 37), (128, 47), (128, 64)), (16, 8)),  # padding on the right
        (Geometry((100, 37), (128, 47), (128, 64)), (3, 2)),  # P6-like odd map of the padded batch
    ],
)
def test_feature_cell_matches_interval_definition(geometry, size):
    h, w = geometry.image_size
    rng = np.random.default_rng(0)
    points = [(0, 0), (h - 1, w - 1)] + [
        (int(r), int(c)) for r, c in zip(rng.integers(0, h, 300), rng.integers(0, w, 300))
    ]
    for p in points:
        assert feature_cell(p, geometry, size)[0] == _cell_by_interval(p, geometry, size)


def test_map_point_is_exact_at_cell_borders():
    # Pixel 3's centre (3.5) ×2 = 7 = exactly the border of cell 7 at stride 1: floor must give 7.
    g = Geometry((10, 10), (20, 20), (32, 32))
    assert map_point((3, 3), g) == (7, 7)
    assert feature_cell((3, 3), g, (32, 32))[0] == (7, 7)
    assert feature_cell((3, 3), g, (16, 16))[0] == (3, 3)  # 7 / 2 = 3.5
    with pytest.raises(ValueError, match="outside"):
        map_point((10, 0), g)


def test_large_image_maps_to_expected_cell():
    # A 2000×3000 image the demo downscaled to 683×1024 (max side 1024); shapes-tiny resizes that to
    # 128×192 (shorter side 128, longer ≤ 256) — no padding. Pixel (1500, 2400): centre 1500.5·128/2000
    # = 96.032 → P3 (16×24, stride 8) row 12; 2400.5·192/3000 = 153.632 → col 19.
    g = Geometry((2000, 3000), (128, 192), (128, 192))
    assert feature_cell((1500, 2400), g, (16, 24))[0] == (12, 19)
    assert feature_cell((1999, 2999), g, (16, 24))[0] == (15, 23)
    ys, xs = cell_centres(g, (16, 24))
    assert ys[12] == pytest.approx((12.5 * 8) * 2000 / 128) and xs[19] == pytest.approx(19.5 * 8 * 3000 / 192)


def test_valid_cells_excludes_padding_only_cells():
    g = Geometry((100, 37), (128, 47), (128, 64))
    assert valid_cells(g, (16, 8)) == (16, math.ceil(47 / 8))


# ----------------------------------------------------------------------------------------------
# per-pixel data on a real (randomly initialised) model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return cfnet.build_model(cfnet.get_config("shapes-tiny")).eval()


@pytest.fixture(scope="module")
def image():
    torch.manual_seed(1)
    return torch.rand(3, 60, 90)  # resized by the model to 128×192


@pytest.fixture(scope="module")
def captured(model, image):
    """The tensors the model itself feeds its SCM and ICM during a forward pass (forward pre-hooks)."""
    seen = {"scm": [], "icm": []}
    hooks = [
        model.semantic_head.module.register_forward_pre_hook(lambda m, a: seen["scm"].append(a[0].clone())),
        model.instance_head.position.register_forward_pre_hook(lambda m, a: seen["icm"].append(a[0].clone())),
    ]
    try:
        model([image])
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.fixture(scope="module")
def inputs(model, image):
    return module_inputs(model, image)


def test_module_inputs_are_what_the_model_feeds(inputs, captured):
    assert list(inputs.scm) == ["p2", "p3", "p4", "p5"]
    assert list(inputs.icm) == ["p2", "p3", "p4"]  # shapes-tiny: 3 instance levels
    assert len(captured["scm"]) == 4 and len(captured["icm"]) == 3
    for x, y in zip(inputs.scm.values(), captured["scm"]):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    for x, y in zip(inputs.icm.values(), captured["icm"]):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    # SOLOv2 strides [8, 8, 16]: the ICM sees P2 halved to P3's size.
    assert inputs.icm["p2"].shape[-2:] == inputs.fpn["p3"].shape[-2:]
    assert inputs.geometry == Geometry((60, 90), (128, 192), (128, 192))


def test_scm_data_equal_the_module_computed_directly(model, image, inputs):
    scm = model.semantic_head.module
    r = inspect_point(model, image, (31, 47), "P3", inputs=inputs)
    x = inputs.fpn["p3"]
    # (31.5·128/60, 47.5·192/90) = (67.2, 101.33) → P3 cell (8, 12)
    assert r.feature_size == (16, 24) and r.feature_point == (8, 12)
    s = r.scm
    assert s.feature_point == (8, 12)
    with torch.no_grad():
        direct = scm.correlation_map(x, (8, 12))[0]
        row_w, col_w = scm.axial_weights(x, (8, 12))
        th, tv = scm.params(x)
    np.testing.assert_array_equal(s.correlation_map, direct.double().numpy())
    np.testing.assert_array_equal(s.row_weights, row_w[0].double().numpy())
    np.testing.assert_array_equal(s.col_weights, col_w[0].double().numpy())
    np.testing.assert_array_equal(s.theta_hor, th[0, 8, 12].double().numpy())
    np.testing.assert_array_equal(s.group("amplitudes").ver, tv[0, 8, 12, :6].double().numpy())
    np.testing.assert_array_equal(s.group("phases").ver, tv[0, 8, 12, 6:].double().numpy())
    assert s.row_weights.shape == (24,) and s.col_weights.shape == (16,)
    assert s.row_weights.sum() == pytest.approx(1.0, abs=1e-5)
    # G(θ^hor, x) against a loop transcription of Eq. 5 (ω' = π/W).
    theta = s.theta_hor
    for j in range(24):
        g = theta[0] + sum(theta[n] * math.sin(n * math.pi / 24 * j + theta[5 + n]) for n in range(1, 6))
        assert s.curves.hor[j] == pytest.approx(g, abs=1e-5)
    # Eq. 6: the 2-D map is the outer product of the two axial functions.
    np.testing.assert_allclose(s.correlation_map, np.outer(s.curves.ver, s.curves.hor), atol=1e-5)
    assert s.stride == pytest.approx((8 * 60 / 128, 8 * 90 / 192))


def test_icm_data_equal_the_module_computed_directly(model, image, inputs):
    icm = model.instance_head.position
    r = inspect_point(model, image, (31, 47), "p2", inputs=inputs)
    i = r.icm
    x = inputs.icm["p2"]  # stride 8: same cell as P3
    assert i.feature_size == (16, 24) and i.feature_point == (8, 12)
    assert r.scm.feature_point == (16, 25)  # the SCM sees the full-resolution P2
    with torch.no_grad():
        direct = icm.correlation_map(x, (8, 12))[0]
        feats = icm.correlation_features(x)[0, :, 8, 12].reshape(16, 16)
        ys, xs = icm.reference_points(16, 24)
    np.testing.assert_array_equal(i.correlation_map, direct.double().numpy())
    np.testing.assert_allclose(i.references, feats.double().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(i.reference_xs, xs.double().numpy())
    np.testing.assert_allclose(i.reference_ys_image, (ys.double().numpy() + 0.5) * 8 * 60 / 128)
    assert "resizes" in i.input_stride
    theta = torch.as_tensor(i.theta_ver)
    np.testing.assert_allclose(
        i.curves.ver, correlation_1d(theta, torch.arange(16.0, dtype=torch.float64), 16), atol=1e-5
    )


def test_levels_without_a_module_give_notes(model, image, inputs):
    r = inspect_point(model, image, (0, 0), "p6", inputs=inputs)
    assert r.scm is None and "P2, P3, P4, P5 only" in r.scm_note
    assert r.icm is None and "P2, P3, P4 only" in r.icm_note
    assert r.feature_point == (0, 0)
    with pytest.raises(ValueError, match="level"):
        inspect_point(model, image, (0, 0), "p7", inputs=inputs)
    with pytest.raises(ValueError, match="outside"):
        inspect_point(model, image, (60, 0), "p3", inputs=inputs)


def test_point_in_original_pixels_of_a_downscaled_image(model):
    # The demo downscales a 2000×3000 image to 683×1024 and passes image_size=(2000, 3000).
    small = torch.rand(3, 683, 1024)
    r = inspect_point(model, small, (1500, 2400), "p3", image_size=(2000, 3000))
    assert r.input_size == (128, 192)
    assert r.feature_point == (12, 19)
    assert r.scm.feature_point == (12, 19) and r.icm.feature_point == (12, 19)


def test_ablation_model_has_notes_instead_of_data():
    cfg = cfnet.get_config(
        "shapes-tiny", ["model.semantic.module=attention", "model.instance.position=coords"]
    )
    model = cfnet.build_model(cfg).eval()
    r = inspect_point(model, torch.rand(3, 32, 32), (5, 5), "p3")
    assert r.scm is None and r.icm is None
    assert "no SCM" in r.scm_note and "attention" in r.scm_note
    assert "no ICM" in r.icm_note and "coords" in r.icm_note


def test_inspection_is_typed_views(model, image, inputs):
    r = inspect_point(model, image, (31, 47), "p3", inputs=inputs)
    assert isinstance(r, PointInspection) and r.level == "p3" and r.point == (31, 47)
    assert r.geometry == inputs.geometry and r.image_size == (60, 90) and r.padded_size == (128, 192)
    assert isinstance(r.scm, ScmView) and isinstance(r.icm, IcmView)
    assert r.scm_note is None and r.icm_note is None
    for view in (r.scm, r.icm):
        assert isinstance(view.curves, Curves)
        assert all(isinstance(g, ParameterGroup) for g in view.parameter_groups)
        assert [g.key for g in view.parameter_groups] == ["amplitudes", "phases"]
        assert view.group("amplitudes").labels == [f"A{n}" for n in range(6)]
        np.testing.assert_array_equal(view.group("amplitudes").hor, view.theta_hor[:6])
        arrays = view.arrays()
        assert arrays["curves.hor"] is view.curves.hor and arrays["phases.ver"] is view.group("phases").ver
        assert "correlation_map" in arrays and "cell_centres.x" in arrays
        with pytest.raises(KeyError, match="widths"):
            view.group("widths")
    assert "row_weights" in r.scm.arrays() and "references" in r.icm.arrays()
    with pytest.raises(AttributeError):
        r.scm.stride = (1.0, 1.0)  # frozen: a view is a record of what the model computed
