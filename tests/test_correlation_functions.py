"""The pluggable correlation function G (cfnet.correlation.CorrelationFunction) and its plumbing.

Every shipped family against a literal transcription of its formula (float64), gradcheck, the
registry and its errors, the config key, a family registered here driving a whole model, and
that ``dft`` through the seam is bit-for-bit the computation the modules did before it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference import g_loop
from tiny import TINY_MODEL

from cfnet.config import ConfigError, choices, get_config, validate
from cfnet.correlation import (
    CORRELATION_FUNCTIONS,
    CorrelationFunction,
    DFTCorrelation,
    GaussianCorrelation,
    LinearCorrelationFunction,
    ParameterGroup,
    PeriodicDFTCorrelation,
    build_correlation_function,
    correlation_1d,
    correlation_1d_polar,
    correlation_2d,
    fourier_basis,
    linear_coefficients,
    pixel_coords,
    register_correlation_function,
    resolve_correlation_function,
)
from cfnet.modules import (
    InstanceCorrelationModule,
    SemanticCorrelationModule,
    ThetaPredictor,
    build_position_module,
    build_semantic_module,
)

DT = torch.float64
SHIPPED = ("dft", "dft-periodic", "gaussian")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


# ---------------------------------------------------------------- literal transcriptions
def g_periodic_loop(theta: list[float], j: float, length: float) -> float:
    """Eq. 3's periodic extension, literally: A0 + Σ_n A_n sin(n ω j + ψ_n), ω = 2π/L."""
    n_levels = (len(theta) - 1) // 2
    omega = 2 * math.pi / length
    value = theta[0]
    for n in range(1, n_levels + 1):
        value += theta[n] * math.sin(n * omega * j + theta[n_levels + n])
    return value


def g_gaussian_loop(theta: list[float], j: float, length: float) -> float:
    """A0 + Σ_n A_n exp(−(j/L − μ_n)²/(2σ_n²)), μ_n = (n − ½)/N, σ_n = exp(s_n)/N."""
    n_levels = (len(theta) - 1) // 2
    value = theta[0]
    for n in range(1, n_levels + 1):
        mu = (n - 0.5) / n_levels
        sigma = math.exp(theta[n_levels + n]) / n_levels
        value += theta[n] * math.exp(-((j / length - mu) ** 2) / (2 * sigma**2))
    return value


LOOPS = {"dft": g_loop, "dft-periodic": g_periodic_loop, "gaussian": g_gaussian_loop}


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize(
    "lead, n_levels, coords, length",
    [
        ((4,), 5, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 7),
        ((2, 3), 3, [0.25, 1.5, 7.9, -0.3], 8.0),
        ((), 1, [0.0, 2.0, 4.5], 5),
        ((2, 1, 3), 7, [float(j) for j in range(11)], 11),
    ],
)
def test_each_function_matches_its_literal_formula(name, lead, n_levels, coords, length):
    fn = build_correlation_function(name, n_levels)
    theta = _rand(*lead, fn.num_params, seed=n_levels)
    out = fn(theta, torch.tensor(coords, dtype=DT), length)
    assert out.shape == (*lead, len(coords)) and out.dtype == DT
    flat_theta, flat_out = theta.reshape(-1, fn.num_params), out.reshape(-1, len(coords))
    for row in range(flat_theta.shape[0]):
        for k, j in enumerate(coords):
            expected = LOOPS[name](flat_theta[row].tolist(), j, length)
            assert flat_out[row, k].item() == pytest.approx(expected, abs=1e-12)


def test_dft_is_the_polar_reference_and_bit_identical_to_correlation_1d():
    theta = _rand(3, 4, 11, seed=3)
    coords = torch.linspace(-1.0, 20.0, 37, dtype=DT)
    fn = build_correlation_function("dft", 5)
    torch.testing.assert_close(
        fn(theta, coords, 17), correlation_1d_polar(theta, coords, 17), rtol=0, atol=1e-12
    )
    # The pre-seam fast path, spelled out: the function must be exactly this computation.
    legacy = torch.matmul(linear_coefficients(theta), fourier_basis(5, coords, 17))
    assert torch.equal(fn(theta, coords, 17), legacy)
    assert torch.equal(correlation_1d(theta, coords, 17), legacy)
    assert isinstance(fn, LinearCorrelationFunction)
    assert torch.equal(fn.coefficients(theta) @ fn.basis(coords, 17.0), legacy)


def test_dft_periodic_has_period_l_and_differs_from_the_mirrored_dft():
    theta = _rand(2, 9, seed=4)
    j = torch.linspace(0, 12.0, 25, dtype=DT)
    fn = build_correlation_function("dft-periodic", 4)
    torch.testing.assert_close(fn(theta, j + 12.0, 12), fn(theta, j, 12), rtol=0, atol=1e-10)
    assert (fn(theta, j, 12) - correlation_1d(theta, j, 12)).abs().max() > 1e-3
    # Linear form too: the same coefficients as dft, a basis at twice the frequency.
    torch.testing.assert_close(fn.basis(j, 12.0), fourier_basis(4, j, 6.0), rtol=0, atol=1e-12)


def test_gaussian_widths_any_real_is_valid_and_extremes_stay_finite():
    fn = GaussianCorrelation(3)
    theta = torch.tensor(
        [[0.1, 1.0, -2.0, 0.5, 0.0, 1.0, -1.0], [0.0, 1.0, 1.0, 1.0, -500.0, 0.0, 500.0]], dtype=DT
    )
    theta.requires_grad_(True)
    out = fn(theta, pixel_coords(9, dtype=DT), 9)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(theta.grad).all()
    torch.testing.assert_close(fn.centres(dtype=DT), torch.tensor([1 / 6, 0.5, 5 / 6], dtype=DT))
    torch.testing.assert_close(fn.widths(theta[:1].detach())[0], torch.exp(theta[0, 4:].detach()) / 3)
    with pytest.raises(ValueError, match="num_levels"):
        GaussianCorrelation(0)


@pytest.mark.parametrize("name", SHIPPED)
def test_gradcheck_each_function(name):
    fn = build_correlation_function(name, 2)
    theta = _rand(3, fn.num_params, seed=5).requires_grad_(True)
    coords = torch.tensor([0.0, 1.3, 2.7, 4.0], dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, c: fn(t, c, 5.0), (theta, coords))
    theta_ver = _rand(3, fn.num_params, seed=6).requires_grad_(True)
    ys = torch.tensor([0.5, 2.0], dtype=DT)
    assert torch.autograd.gradcheck(
        lambda th, tv: correlation_2d(th, tv, coords.detach(), ys, 5.0, 3, function=fn), (theta, theta_ver)
    )


@pytest.mark.parametrize("name", SHIPPED)
def test_correlation_2d_is_the_product_of_the_functions(name):
    fn = build_correlation_function(name, 3)
    th, tv = _rand(2, 7, seed=7), _rand(2, 7, seed=8)
    xs, ys = pixel_coords(5, dtype=DT), pixel_coords(4, dtype=DT)
    out = correlation_2d(th, tv, xs, ys, 5, 4, function=fn)
    torch.testing.assert_close(out, fn(tv, ys, 4)[:, :, None] * fn(th, xs, 5)[:, None, :], rtol=0, atol=0)
    if name == "dft":  # the default is dft
        assert torch.equal(correlation_2d(th, tv, xs, ys, 5, 4), out)
    with pytest.raises(ValueError, match="last dimension of 7"):
        correlation_2d(th[:, :5], tv, xs, ys, 5, 4, function=fn)


# ---------------------------------------------------------------- layout, init, description
@pytest.mark.parametrize("name", SHIPPED)
def test_layout_and_init_bias(name):
    fn = build_correlation_function(name, 4)
    assert fn.name == name and fn.num_levels == 4 and fn.num_params == 9
    assert len(fn.param_names) == 9 and fn.param_names[:5] == ["A0", "A1", "A2", "A3", "A4"]
    bias = fn.init_bias()
    assert bias.shape == (9,) and bias.dtype == torch.float64
    # For all three: A0 = 0, A_n = 0.1/n, the other N numbers (phases ψ_n / log-widths s_n) 0.
    expected = torch.tensor([0.0] + [0.1 / n for n in range(1, 5)] + [0.0] * 4, dtype=DT)
    assert torch.equal(bias, expected)
    groups = fn.describe(_rand(2, 9))
    assert all(isinstance(g, ParameterGroup) for g in groups)
    assert sum(len(g.labels) for g in groups) == 9
    assert all(g.values.shape == (2, len(g.labels)) for g in groups)


def test_descriptions_name_each_familys_own_parameters():
    theta = _rand(11, seed=9)
    dft = build_correlation_function("dft", 5).describe(theta)
    assert [g.key for g in dft] == ["amplitudes", "phases"]
    assert torch.equal(dft[0].values, theta[:6]) and torch.equal(dft[1].values, theta[6:])
    assert dft[1].labels[0] == "ψ1"
    gauss = build_correlation_function("gaussian", 5).describe(theta)
    assert [g.key for g in gauss] == ["amplitudes", "widths"]
    torch.testing.assert_close(gauss[1].values, torch.exp(theta[6:]) / 5)
    assert not any("ψ" in label for g in gauss for label in g.labels)


def test_theta_predictor_bias_from_the_function_dft_unchanged():
    torch.manual_seed(0)
    pred = ThetaPredictor(4, num_levels=3, hidden_channels=8)
    assert pred.function == DFTCorrelation(3)
    expected = torch.zeros(7)
    expected[1:4] = (0.1 / torch.arange(1, 4, dtype=torch.float64)).float()
    assert torch.equal(pred.hor.bias.detach(), expected) and torch.equal(pred.ver.bias.detach(), expected)
    g = ThetaPredictor(4, hidden_channels=8, function=build_correlation_function("gaussian", 2))
    assert g.num_levels == 2 and g.hor.out_channels == 5
    with pytest.raises(ValueError, match="disagrees"):
        ThetaPredictor(4, num_levels=3, hidden_channels=8, function=build_correlation_function("gaussian", 2))


@pytest.mark.parametrize("name", ["gaussian", "dft-periodic"])
def test_init_gives_small_smooth_curves_and_gradient_to_every_parameter(name):
    torch.manual_seed(0)
    pred = ThetaPredictor(16, num_levels=5, hidden_channels=64, function=name)
    th, _ = pred(torch.randn(2, 16, 12, 10))
    g = pred.function(th, pixel_coords(10), 10)
    assert g.abs().max() < 1.0  # near-uniform initial softmax
    assert g.std(dim=-1).min() > 1e-3  # not constant along the axis
    # On featureless input θ is the bias alone: a curve that is not constant and sends gradient
    # to every parameter.
    theta = pred.function.init_bias().clone().requires_grad_(True)
    # (L = 13: at L = 2N the top periodic level sin(Nωj) = sin(πj) would vanish on every pixel.)
    g0 = pred.function(theta, pixel_coords(13, dtype=DT), 13)
    assert g0.std() > 1e-2
    if name == "gaussian":  # smooth too: neighbours differ little (Fourier inits start like a sawtooth)
        assert (g0[1:] - g0[:-1]).abs().max() < 0.05
    (g0 * _rand(13, seed=12)).sum().backward()  # a generic loss (Σ g0² has no ψ gradient on a full period)
    assert (theta.grad.abs() > 1e-6).all(), theta.grad


@pytest.mark.parametrize("name", SHIPPED)
def test_modules_run_every_function_and_send_gradient_to_every_parameter(name):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 5, 7)
    for m in (
        SemanticCorrelationModule(6, num_levels=3, hidden_channels=4, function=name),
        SemanticCorrelationModule(6, num_levels=3, hidden_channels=4, function=name, mode="global"),
        InstanceCorrelationModule(6, num_levels=3, num_refs=4, hidden_channels=4, function=name),
    ):
        assert m.function.name == name and m.theta.function is m.function
        out = m(x)
        assert out.shape == x.shape
        (out * torch.randn_like(out)).sum().backward()
        for pname, p in m.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (name, pname)
        th, tv = m.params(x)
        cmap = m.correlation_map(x, (2, 3))
        g_x = m.function(th[:, 2, 3], pixel_coords(7), 7)
        g_y = m.function(tv[:, 2, 3], pixel_coords(5), 5)
        torch.testing.assert_close(cmap, g_y[:, :, None] * g_x[:, None, :])


def test_dft_modules_compute_exactly_the_pre_seam_path():
    """SCM (axial, global) and ICM with the default function against the old formula, bit for bit."""
    torch.manual_seed(0)
    x = torch.randn(1, 4, 5, 6)

    def legacy(theta, coords, length):
        return torch.matmul(linear_coefficients(theta), fourier_basis(5, coords, length))

    scm = SemanticCorrelationModule(4, hidden_channels=3)
    th, tv = scm.params(x)
    xs, ys = pixel_coords(6), pixel_coords(5)
    row_w = torch.softmax(legacy(th, xs, 6), -1)
    col_w = torch.softmax(legacy(tv, ys, 5), -1)
    row_f = torch.matmul(row_w, x.permute(0, 2, 3, 1))
    col_f = torch.matmul(col_w.transpose(1, 2), x.permute(0, 3, 2, 1))
    assert torch.equal(scm(x), x + (row_f.permute(0, 3, 1, 2) + col_f.permute(0, 3, 2, 1)))
    glob = SemanticCorrelationModule(4, hidden_channels=3, mode="global")
    th, tv = glob.params(x)
    cor = legacy(tv, ys, 5)[..., :, None] * legacy(th, xs, 6)[..., None, :]
    weights = torch.softmax(cor.reshape(1, 30, 30), -1)
    expected = torch.bmm(weights, x.reshape(1, 4, 30).transpose(1, 2)).transpose(1, 2).reshape(1, 4, 5, 6)
    assert torch.equal(glob(x), x + expected)
    icm = InstanceCorrelationModule(4, num_refs=3, hidden_channels=3)
    th, tv = icm.params(x)
    ry, rx = icm.reference_points(5, 6)
    c = (legacy(tv, ry, 5)[..., :, None] * legacy(th, rx, 6)[..., None, :]).reshape(1, 5, 6, 9)
    assert torch.equal(icm.correlation_features(x), c.permute(0, 3, 1, 2))


# ---------------------------------------------------------------- registry and config
def test_registry_holds_the_shipped_functions_and_errors_name_the_choices():
    assert set(SHIPPED) <= set(CORRELATION_FUNCTIONS)
    assert CORRELATION_FUNCTIONS["dft"] is DFTCorrelation
    assert CORRELATION_FUNCTIONS["dft-periodic"] is PeriodicDFTCorrelation
    with pytest.raises(ValueError, match="unknown correlation function 'nope'.*dft, dft-periodic, gaussian"):
        build_correlation_function("nope", 5)
    with pytest.raises(ValueError, match="already registered"):
        register_correlation_function("dft")(PeriodicDFTCorrelation)
    with pytest.raises(TypeError, match="CorrelationFunction subclasses"):
        register_correlation_function("not-a-function")(dict)
    with pytest.raises(ValueError, match="name"):
        register_correlation_function("")
    assert "not-a-function" not in CORRELATION_FUNCTIONS
    # re-registering the same class under its own name is harmless
    assert register_correlation_function("dft")(DFTCorrelation) is DFTCorrelation
    assert resolve_correlation_function(None) == DFTCorrelation(5)
    assert resolve_correlation_function("gaussian", 3) == GaussianCorrelation(3)
    with pytest.raises(ValueError, match="valid choices"):
        SemanticCorrelationModule(4, hidden_channels=2, function="nope")
    with pytest.raises(ValueError, match="valid choices"):
        build_position_module("icm", 4, function="nope")


def test_config_key_choices_come_from_the_registry():
    assert get_config("shapes-tiny").model.correlation.function == "dft"
    assert choices("model.correlation.function") == tuple(CORRELATION_FUNCTIONS)
    for name in SHIPPED:
        validate(get_config("shapes-tiny", [f"model.correlation.function={name}"]))
    with pytest.raises(ConfigError, match="'model.correlation.function'.*'nope' is not one of dft"):
        validate(get_config("shapes-tiny", ["model.correlation.function=nope"]))
    with pytest.raises(ConfigError, match="model.correlation.function"):
        get_config("shapes-tiny", ["model.correlation.function=3"])


def test_config_plumbs_the_function_into_both_modules():
    from cfnet.model import build_model

    cfg = get_config("shapes-tiny", [*TINY_MODEL, "model.correlation.function=gaussian"])
    model = build_model(cfg)
    assert model.semantic_head.module.function == GaussianCorrelation(5)
    assert model.instance_head.position.function == GaussianCorrelation(5)
    scm = build_semantic_module("scm", 4, num_levels=2, function="dft-periodic")
    assert scm.function == PeriodicDFTCorrelation(2)


# ---------------------------------------------------------------- a family registered here
class RampCorrelation(LinearCorrelationFunction):
    """A toy family with a different layout: G(θ, j) = a + b·j/L (2 numbers, whatever N)."""

    label = "G(θ, j) = a + b·j/L"

    @property
    def num_params(self) -> int:
        return 2

    @property
    def param_names(self) -> list[str]:
        return ["a", "b"]

    def init_bias(self) -> torch.Tensor:
        return torch.tensor([0.0, 0.1], dtype=torch.float64)

    def coefficients(self, theta: torch.Tensor) -> torch.Tensor:
        return theta

    def basis(self, coords: torch.Tensor, length: float) -> torch.Tensor:
        return torch.stack([torch.ones_like(coords), coords / length])


@pytest.fixture
def ramp():
    register_correlation_function("test-ramp")(RampCorrelation)
    try:
        yield "test-ramp"
    finally:
        CORRELATION_FUNCTIONS.pop("test-ramp", None)


def _scene(size: int = 64) -> tuple[torch.Tensor, dict]:
    """Two touching squares of one class on two stuff regions (shapes' contiguous ids)."""
    image = torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(2, size, size, dtype=torch.bool)
    masks[0, 16:40, 8:32] = True
    masks[1, 16:40, 32:56] = True
    sem = torch.full((size, size), 3, dtype=torch.long)
    sem[size // 2 :] = 4
    sem[masks.any(0)] = 1
    return image, {"masks": masks, "labels": torch.tensor([1, 1]), "sem_seg": sem}


def _train_step(overrides: list[str]) -> torch.nn.Module:
    from cfnet.model import build_model

    torch.manual_seed(0)
    model = build_model(get_config("shapes-tiny", [*TINY_MODEL, *overrides])).train()
    image, target = _scene()
    losses = model([image], [target])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for module in (model.semantic_head.module, model.instance_head.position):
        for pname, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, pname
    model.eval()
    with torch.no_grad():
        out = model([image])[0]
    assert out["panoptic_seg"].shape == (64, 64)
    return model


def test_a_registered_toy_function_builds_and_trains_a_shapes_tiny_model(ramp):
    assert ramp in choices("model.correlation.function")
    model = _train_step([f"model.correlation.function={ramp}"])
    scm = model.semantic_head.module
    assert isinstance(scm.function, RampCorrelation) and scm.theta.hor.out_channels == 2
    torch.testing.assert_close(scm.theta.hor.bias.detach(), torch.tensor([0.0, 0.1]))
    # Inspection and drawing use the function's own names: one group of raw parameters.
    from cfnet import viz
    from cfnet.inspection import inspect_point

    info = inspect_point(model, _scene()[0], (30, 30), "p3").scm
    assert info.function == ramp and info.param_names == ["a", "b"]
    assert [g.labels for g in info.parameter_groups] == [["a", "b"]]
    fig = viz.correlation_curves_figure(info.curves, info.parameter_groups)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [list(b.x) for b in bars] == [["a", "b"], ["a", "b"]]
    np.testing.assert_allclose(bars[1].y, info.theta_ver)


# ---------------------------------------------------------------- inspection, drawing, demo
@pytest.fixture(scope="module")
def gaussian_model():
    from cfnet.model import build_model

    torch.manual_seed(0)
    return build_model(get_config("shapes-tiny", [*TINY_MODEL, "model.correlation.function=gaussian"])).eval()


def test_inspect_draws_a_gaussian_model_with_its_own_function(gaussian_model):
    from cfnet.inspection import inspect_point

    image = _scene()[0]
    r = inspect_point(gaussian_model, image, (30, 30), "p3")
    for info, module in (
        (r.scm, gaussian_model.semantic_head.module),
        (r.icm, gaussian_model.instance_head.position),
    ):
        assert info.function == "gaussian" and "phases.hor" not in info.arrays()
        with pytest.raises(KeyError, match="no parameter group 'phases'"):
            info.group("phases")
        assert [g.key for g in info.parameter_groups] == ["amplitudes", "widths"]
        th = torch.as_tensor(info.theta_hor)
        np.testing.assert_allclose(
            info.group("widths").hor, (torch.exp(th[6:]) / 5).numpy(), rtol=1e-6
        )  # float32 model
        fn = module.function
        w = info.feature_size[1]
        np.testing.assert_allclose(
            info.curves.hor, fn(th, torch.arange(float(w), dtype=DT), w).numpy(), atol=1e-5
        )
        dense = fn(th, torch.as_tensor(info.curves.dense_x), w).numpy()
        np.testing.assert_allclose(info.curves.dense_hor, dense, atol=1e-5)
        np.testing.assert_allclose(
            info.correlation_map, np.outer(info.curves.ver, info.curves.hor), atol=1e-5
        )
    refs = r.icm.references
    assert refs.shape == (16, 16)


def test_demo_figures_show_the_functions_parameters(gaussian_model):
    from app.figures import info_markdown, inspection_figures
    from app.images import load_image
    from cfnet.inspection import inspect_point

    image = (_scene()[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    loaded = load_image(image)
    data = inspect_point(gaussian_model, torch.as_tensor(image).permute(2, 0, 1) / 255.0, (30, 30), "p3")
    figures = inspection_figures(data, loaded)
    for fig, view in ((figures[2], data.scm), (figures[5], data.icm)):
        bars = [t for t in fig.data if t.type == "bar"]
        labels = [label for b in bars for label in b.x]
        assert "σ1" in labels and not any(label.startswith("ψ") for label in labels)
        dots = [t for t in fig.data if t.type == "scatter" and t.mode == "markers"]
        np.testing.assert_allclose(dots[0].y, view.curves.hor)
        assert "gaussian" in fig.layout.title.text
    text = info_markdown(data, loaded, None, gaussian_model.categories, "fresh")
    assert text.count("Correlation function G: `gaussian`") == 2


@pytest.mark.parametrize("name", SHIPPED)
def test_viz_draws_each_function_from_theta(name):
    from cfnet import viz

    fn = build_correlation_function(name, 3)
    th, tv = _rand(7, seed=10), _rand(7, seed=11)
    fig = viz.correlation_function_figure(th, tv, 9, 6, function=name, point=(2, 3))
    dots = [t for t in fig.data if t.type == "scatter" and t.mode == "markers"]
    np.testing.assert_allclose(dots[0].y, fn(th, pixel_coords(9, dtype=DT), 9).numpy())
    np.testing.assert_allclose(dots[1].y, fn(tv, pixel_coords(6, dtype=DT), 6).numpy())
    lines = [t for t in fig.data if t.type == "scatter" and t.mode == "lines"]
    np.testing.assert_allclose(lines[0].y, fn(th, torch.as_tensor(lines[0].x), 9).numpy())
    bars = [t for t in fig.data if t.type == "bar"]
    groups = fn.describe(th)
    assert [list(b.x) for b in bars[::2]] == [list(g.labels) for g in groups]
    np.testing.assert_allclose(bars[2].y, groups[1].values.numpy())
    assert fig.layout.title.text.endswith(f"<sup>{fn.label}</sup>")


def test_no_fourier_specific_drawing_code_is_left():
    import cfnet.inspection as inspect_module
    from cfnet import viz
    from cfnet.viz import figures

    for gone in ("_g", "_split_theta"):
        assert not hasattr(viz, gone) and not hasattr(figures, gone)
    assert not hasattr(inspect_module, "_theta_parts")
    assert issubclass(GaussianCorrelation, CorrelationFunction)
