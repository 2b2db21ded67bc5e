"""SCM, ICM, θ predictor and baselines against loop transcriptions of Eqs. 6 and 8–11 (float64)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from recording import RecordShapes
from reference import g_loop

from cfnet.modules import (
    AddCoords,
    InstanceCorrelationModule,
    NonLocalBlock,
    SemanticCorrelationModule,
    SinePositionEmbedding,
    ThetaPredictor,
    build_position_module,
    build_semantic_module,
)

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- literal transcriptions


def softmax_loop(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def axial_loop(x: torch.Tensor, theta_hor: torch.Tensor, theta_ver: torch.Tensor) -> torch.Tensor:
    """Eq. 9 with DESIGN's axes: row term from G(θ_u^hor, v_x), column term from G(θ_u^ver, v_y)."""
    batch, _, height, width = x.shape
    out = torch.zeros_like(x)
    for b in range(batch):
        for uy in range(height):
            for ux in range(width):
                row_w = softmax_loop(
                    [g_loop(theta_hor[b, uy, ux].tolist(), vx, width) for vx in range(width)]
                )
                col_w = softmax_loop(
                    [g_loop(theta_ver[b, uy, ux].tolist(), vy, height) for vy in range(height)]
                )
                for vx in range(width):
                    out[b, :, uy, ux] += row_w[vx] * x[b, :, uy, vx]
                for vy in range(height):
                    out[b, :, uy, ux] += col_w[vy] * x[b, :, vy, ux]
    return out


def cor2d_loop(theta_hor: list[float], theta_ver: list[float], vx: float, vy: float, w: int, h: int) -> float:
    """Eq. 6: G(θ_u^hor, v_x)·G(θ_u^ver, v_y)."""
    return g_loop(theta_hor, vx, w) * g_loop(theta_ver, vy, h)


def global_loop(x: torch.Tensor, theta_hor: torch.Tensor, theta_ver: torch.Tensor) -> torch.Tensor:
    """Eq. 8: softmax over all v of cor_2d(u, v), weighted sum of f_v."""
    batch, _, height, width = x.shape
    out = torch.zeros_like(x)
    positions = [(vy, vx) for vy in range(height) for vx in range(width)]
    for b in range(batch):
        for uy in range(height):
            for ux in range(width):
                th, tv = theta_hor[b, uy, ux].tolist(), theta_ver[b, uy, ux].tolist()
                w = softmax_loop([cor2d_loop(th, tv, vx, vy, width, height) for vy, vx in positions])
                for k, (vy, vx) in enumerate(positions):
                    out[b, :, uy, ux] += w[k] * x[b, :, vy, vx]
    return out


def ref_points_loop(length: int, s: int) -> list[float]:
    return [(k + 0.5) * length / s - 0.5 for k in range(s)]


def icm_features_loop(theta_hor, theta_ver, height, width, s_y, s_x) -> torch.Tensor:
    """Eq. 10: c_u[a·S_x + b] = cor_2d(u, (py_a, px_b))."""
    batch = theta_hor.shape[0]
    py, px = ref_points_loop(height, s_y), ref_points_loop(width, s_x)
    out = torch.zeros(batch, s_y * s_x, height, width, dtype=DT)
    for b in range(batch):
        for uy in range(height):
            for ux in range(width):
                th, tv = theta_hor[b, uy, ux].tolist(), theta_ver[b, uy, ux].tolist()
                for a in range(s_y):
                    for bb in range(s_x):
                        out[b, a * s_x + bb, uy, ux] = cor2d_loop(th, tv, px[bb], py[a], width, height)
    return out


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _randomise(module: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> torch.nn.Module:
    """Random (not init-like) weights, so θ and the projections are far from any special case."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return module


def _scm(mode: str = "axial", channels: int = 3, num_levels: int = 2, seed: int = 0, **kw):
    torch.manual_seed(seed)
    m = SemanticCorrelationModule(channels, num_levels=num_levels, mode=mode, hidden_channels=4, **kw)
    return _randomise(m.to(DT), seed)


def _icm(num_refs=(2, 3), channels: int = 3, num_levels: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    m = InstanceCorrelationModule(channels, num_levels=num_levels, num_refs=num_refs, hidden_channels=4)
    return _randomise(m.to(DT), seed)


# ---------------------------------------------------------------- θ predictor
def test_theta_predictor_layout_and_heads():
    torch.manual_seed(0)
    pred = _randomise(ThetaPredictor(3, num_levels=2, hidden_channels=4).to(DT))
    x = _x(2, 3, 4, 5)
    th, tv = pred(x)
    assert th.shape == tv.shape == (2, 4, 5, 5)
    hidden = torch.relu(F.conv2d(x, pred.conv.weight, pred.conv.bias, padding=1))
    for b, y, xx in [(0, 0, 0), (1, 3, 4), (0, 2, 1)]:
        h = hidden[b, :, y, xx]
        torch.testing.assert_close(th[b, y, xx], pred.hor.weight[:, :, 0, 0] @ h + pred.hor.bias)
        torch.testing.assert_close(tv[b, y, xx], pred.ver.weight[:, :, 0, 0] @ h + pred.ver.bias)


def test_theta_predictor_init_is_small_but_not_degenerate():
    torch.manual_seed(0)
    pred = ThetaPredictor(16, num_levels=5, hidden_channels=64)
    th, tv = pred(torch.randn(2, 16, 12, 10))
    from cfnet.correlation import correlation_1d, pixel_coords

    g = correlation_1d(th, pixel_coords(10), 10)
    assert g.abs().max() < 1.0  # small: near-uniform initial softmax
    assert g.std(dim=-1).min() > 1e-3  # but not constant along the axis
    assert (th - th[:, :1, :1]).abs().max() > 1e-4  # and depends on the pixel
    amplitudes = th[..., 1:6]
    assert (amplitudes.abs() > 0).all()
    # On featureless input θ is the bias alone: amplitudes 0.1/n keep ∂G/∂ψ_n = A_n·cos(·)
    # away from zero; A0 and the phases start at 0.
    th0, tv0 = pred(torch.zeros(1, 16, 3, 3))
    expected = torch.tensor([0.0] + [0.1 / n for n in range(1, 6)] + [0.0] * 5)
    torch.testing.assert_close(th0[0, 1, 1], expected)
    torch.testing.assert_close(tv0[0, 1, 1], expected)


@pytest.mark.parametrize("which", ["scm-axial", "scm-global", "icm"])
def test_every_theta_parameter_gets_nonzero_gradient(which):
    torch.manual_seed(0)
    if which == "icm":
        m = InstanceCorrelationModule(8, num_refs=4, hidden_channels=6)
    else:
        m = SemanticCorrelationModule(8, mode=which.split("-")[1], hidden_channels=6)
    x = torch.randn(2, 8, 6, 7)
    out = m(x)
    (out * torch.randn_like(out)).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert {n for n, _ in m.theta.named_parameters()} == {
        "conv.weight",
        "conv.bias",
        "hor.weight",
        "hor.bias",
        "ver.weight",
        "ver.bias",
    }


def test_parameter_budget_arithmetic_in_docstring():
    # The θ predictor docstring claims hidden 100 ≈ the paper's +0.60 M for SCM + ICM at C = 256.
    def count(m):
        return sum(p.numel() for p in m.parameters())

    total = count(SemanticCorrelationModule(256, hidden_channels=100)) + count(
        InstanceCorrelationModule(256, num_levels=5, num_refs=16, hidden_channels=100)
    )
    assert total == 597_028


# ---------------------------------------------------------------- SCM
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 5, 3), (1, 3, 1, 4)])
def test_scm_axial_forward_matches_eq9_loop(shape):
    m = _scm("axial", channels=shape[1], seed=shape[2])
    x = _x(*shape, seed=1)
    th, tv = m.params(x)
    assert th.shape == tv.shape == (shape[0], shape[2], shape[3], 5)
    torch.testing.assert_close(m(x), x + axial_loop(x, th, tv), rtol=1e-10, atol=1e-10)


def _constant_theta_scm(width_peak: float) -> SemanticCorrelationModule:
    """An SCM whose θ is the same at every pixel: θ^hor = big cosine peaked at x = 0, θ^ver = 0."""
    m = SemanticCorrelationModule(1, num_levels=1, hidden_channels=2).to(DT)
    with torch.no_grad():
        for head in (m.theta.hor, m.theta.ver):
            head.weight.zero_()
            head.bias.zero_()
        m.theta.hor.bias[1] = width_peak  # A1
        m.theta.hor.bias[2] = math.pi / 2  # ψ1: A1 sin(πj/W + π/2) = A1 cos(πj/W)
    return m


def test_scm_axial_axes_known_answer_fails_with_papers_swapped_axes():
    # f_v = v_x varies only along x; θ^hor peaks sharply at v_x = 0; θ^ver is flat.
    height, width, amp = 5, 8, 60.0
    m = _constant_theta_scm(amp)
    x = torch.arange(width, dtype=DT).expand(1, 1, height, width).clone()
    g_row = [amp * math.cos(math.pi * j / width) for j in range(width)]
    row_term = sum(w * j for w, j in zip(softmax_loop(g_row), range(width)))  # ≈ 0
    ux = torch.arange(width, dtype=DT)
    # DESIGN's axes: row term weighted by G(θ^hor, v_x); column term uniform over a constant column.
    expected = ux + row_term + ux
    out = m(x)[0, 0]
    torch.testing.assert_close(out, expected.expand(height, width), rtol=1e-10, atol=1e-10)
    # Paper's printed Eq. 9: the column {p_x = u_x} weighted by cor_hor and the row {p_y = u_y}
    # by cor_ver. Either read literally (cor_hor constant on a column, cor_ver = 0 on a row:
    # both uniform) or with θ^hor evaluated at v_y, the column term is u_x (f is constant on a
    # column) and the row term is the row mean (W-1)/2, far from the peaked row term above.
    swapped = ux + ux + (width - 1) / 2
    assert (out - swapped).abs().min() > 1.0


@pytest.mark.parametrize("shape", [(1, 2, 3, 4), (2, 3, 2, 3)])
def test_scm_global_forward_matches_eq8_loop(shape):
    m = _scm("global", channels=shape[1], seed=7)
    x = _x(*shape, seed=2)
    th, tv = m.params(x)
    torch.testing.assert_close(m(x), x + global_loop(x, th, tv), rtol=1e-10, atol=1e-10)


def test_scm_axial_weights_match_loop_softmax():
    m = _scm("axial", channels=3, seed=3)
    x = _x(2, 3, 4, 6, seed=4)
    th, tv = m.params(x)
    for row, col in [(0, 0), (3, 5), (1, 4)]:
        rw, cw = m.axial_weights(x, (row, col))
        assert rw.shape == (2, 6) and cw.shape == (2, 4)
        for b in range(2):
            exp_r = softmax_loop([g_loop(th[b, row, col].tolist(), vx, 6) for vx in range(6)])
            exp_c = softmax_loop([g_loop(tv[b, row, col].tolist(), vy, 4) for vy in range(4)])
            torch.testing.assert_close(rw[b], torch.tensor(exp_r, dtype=DT))
            torch.testing.assert_close(cw[b], torch.tensor(exp_c, dtype=DT))


@pytest.mark.parametrize("kind", ["scm", "icm"])
def test_correlation_map_matches_eq6_loop(kind):
    m = _scm("axial", seed=5) if kind == "scm" else _icm(seed=5)
    x = _x(2, 3, 3, 5, seed=6)
    th, tv = m.params(x)
    for row, col in [(0, 0), (2, 4), (1, 2)]:
        cmap = m.correlation_map(x, (row, col))
        assert cmap.shape == (2, 3, 5)
        for b in range(2):
            for vy in range(3):
                for vx in range(5):
                    expected = cor2d_loop(th[b, row, col].tolist(), tv[b, row, col].tolist(), vx, vy, 5, 3)
                    assert cmap[b, vy, vx].item() == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="outside"):
        m.correlation_map(x, (3, 0))
    with pytest.raises(ValueError, match="outside"):
        m.correlation_map(x, (0, -1))
    with pytest.raises(ValueError, match="pair"):
        m.correlation_map(x, 3)
    with pytest.raises(ValueError, match="int"):
        m.correlation_map(x, (1.5, 2))
    torch.testing.assert_close(m.correlation_map(x, torch.tensor([2, 4])), m.correlation_map(x, (2, 4)))


def test_scm_global_dense_only_refuses_above_limit_with_clear_error():
    # max_chunk_bytes=None is the dense-only implementation from before query blocks, with its
    # refusal; with blocks (the default) larger maps run (tests/test_global_chunked.py).
    m = SemanticCorrelationModule(
        2, hidden_channels=2, mode="global", max_global_positions=100, max_chunk_bytes=None
    )
    assert m(torch.randn(1, 2, 10, 10)).shape == (1, 2, 10, 10)  # at the limit: fine
    with pytest.raises(ValueError) as err:
        m(torch.randn(1, 2, 12, 12))
    msg = str(err.value)
    assert "12x12" in msg and "144" in msg and "100" in msg and "max_global_positions" in msg


def test_axial_scm_never_builds_an_hw_by_hw_tensor():
    height, width = 96, 128
    hw2 = (height * width) ** 2
    torch.manual_seed(0)
    m = SemanticCorrelationModule(2, num_levels=2, hidden_channels=2)
    x = torch.randn(1, 2, height, width, requires_grad=True)
    rec = RecordShapes()
    with rec:
        out = m(x)
        n_forward = len(rec.sizes)
        out.square().mean().backward()
    assert len(rec.sizes) > n_forward + 10  # the backward ops were recorded too
    assert x.grad is not None and m.theta.conv.weight.grad is not None
    biggest = max(rec.sizes, key=lambda s: s[1])
    assert biggest[1] < hw2, biggest
    assert biggest[1] <= height * width * max(height, width) * 2  # O(HW·(H+W))

    # The recorder does see a quadratic tensor when one exists (global mode, small map).
    g = SemanticCorrelationModule(2, num_levels=2, hidden_channels=2, mode="global")
    rec = RecordShapes()
    with rec:
        g(torch.randn(1, 2, 6, 7)).sum().backward()
    assert max(s for _, s in rec.sizes) >= (6 * 7) ** 2


def test_scm_validation():
    with pytest.raises(ValueError, match="mode"):
        SemanticCorrelationModule(4, mode="diagonal", hidden_channels=2)
    m = SemanticCorrelationModule(4, hidden_channels=2)
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        m(torch.randn(1, 3, 5, 5))
    assert m.out_channels == 4


# ---------------------------------------------------------------- ICM
def test_icm_reference_points_are_cell_centres():
    m = InstanceCorrelationModule(2, num_refs=(3, 4), hidden_channels=2)
    ys, xs = m.reference_points(6, 10, dtype=DT)
    assert ys.tolist() == pytest.approx(ref_points_loop(6, 3))  # [0.5, 2.5, 4.5]
    assert xs.tolist() == pytest.approx(ref_points_loop(10, 4))
    assert ys.tolist() == pytest.approx([0.5, 2.5, 4.5])
    m16 = InstanceCorrelationModule(2, num_refs=16, hidden_channels=2)
    assert m16.num_refs == (16, 16)
    ys, xs = m16.reference_points(32, 16)
    assert ys.shape == xs.shape == (16,)
    assert xs.tolist() == pytest.approx([float(k) for k in range(16)])


@pytest.mark.parametrize(
    "num_refs, shape", [((2, 3), (2, 3, 4, 5)), (2, (1, 2, 5, 3)), ((3, 1), (1, 2, 2, 4))]
)
def test_icm_correlation_features_match_eq10_loop(num_refs, shape):
    m = _icm(num_refs=num_refs, channels=shape[1], seed=8)
    x = _x(*shape, seed=9)
    th, tv = m.params(x)
    s_y, s_x = (num_refs, num_refs) if isinstance(num_refs, int) else num_refs
    feats = m.correlation_features(x)
    assert feats.shape == (shape[0], s_y * s_x, shape[2], shape[3])
    expected = icm_features_loop(th, tv, shape[2], shape[3], s_y, s_x)
    torch.testing.assert_close(feats, expected, rtol=1e-10, atol=1e-10)


def test_icm_forward_matches_eq11_loop():
    m = _icm(num_refs=(2, 3), channels=3, seed=10)
    x = _x(2, 3, 4, 3, seed=11)
    th, tv = m.params(x)
    c = icm_features_loop(th, tv, 4, 3, 2, 3)
    wf, bf = m.feature_proj.weight[:, :, 0, 0], m.feature_proj.bias
    wc, bc = m.correlation_proj.weight[:, :, 0, 0], m.correlation_proj.bias
    out = m(x)
    assert out.shape == x.shape and m.out_channels == 3
    for b in range(2):
        for uy in range(4):
            for ux in range(3):
                expected = wf @ x[b, :, uy, ux] + bf + wc @ c[b, :, uy, ux] + bc
                torch.testing.assert_close(out[b, :, uy, ux], expected, rtol=1e-10, atol=1e-10)


def test_icm_validation_and_init():
    for bad in (0, (2,), (2, 0), (2, 3, 4), "16", (2.0, 3)):
        with pytest.raises(ValueError, match="num_refs"):
            InstanceCorrelationModule(4, num_refs=bad, hidden_channels=2)
    m = InstanceCorrelationModule(4, num_refs=(2, 5), hidden_channels=2)
    assert m.correlation_proj.in_channels == 10
    # W_f starts as the identity: the module starts as features + a small correlation term.
    x = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(m.feature_proj(x), x)


# ---------------------------------------------------------------- gradcheck
def _gradcheck_module(m: torch.nn.Module, x: torch.Tensor) -> bool:
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]

    def f(inp, *ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (inp,))

    return torch.autograd.gradcheck(f, (x.requires_grad_(), *params))


@pytest.mark.parametrize("kind", ["scm-axial", "scm-global", "icm"])
def test_gradcheck_modules(kind):
    if kind == "icm":
        m = _icm(num_refs=(2, 3), channels=2, num_levels=1, seed=12)
    else:
        m = _scm(kind.split("-")[1], channels=2, num_levels=1, seed=12)
    assert _gradcheck_module(m, _x(1, 2, 3, 4, seed=13))


# ---------------------------------------------------------------- baselines
def test_nonlocal_block_matches_embedded_gaussian_loop():
    torch.manual_seed(0)
    m = NonLocalBlock(4, inter_channels=3).to(DT)
    x = _x(2, 4, 3, 2, seed=14)
    torch.testing.assert_close(m(x), x)  # zero-initialised output projection: identity at start
    _randomise(m, seed=15)
    out = m(x)
    w = {k: getattr(m, k).weight[:, :, 0, 0] for k in ("theta", "phi", "g", "out")}
    bias = {k: getattr(m, k).bias for k in ("theta", "phi", "g", "out")}
    pos = [(i, j) for i in range(3) for j in range(2)]
    for b in range(2):
        for uy, ux in pos:
            q = w["theta"] @ x[b, :, uy, ux] + bias["theta"]
            sims = [(q @ (w["phi"] @ x[b, :, vy, vx] + bias["phi"])).item() for vy, vx in pos]
            att = softmax_loop(sims)
            y = sum(a * (w["g"] @ x[b, :, vy, vx] + bias["g"]) for a, (vy, vx) in zip(att, pos))
            torch.testing.assert_close(out[b, :, uy, ux], x[b, :, uy, ux] + w["out"] @ y + bias["out"])
    assert m.out_channels == 4 and NonLocalBlock(8).inter_channels == 4


def test_nonlocal_block_dense_only_refuses_large_maps():
    m = NonLocalBlock(2, max_positions=50, max_chunk_bytes=None)
    with pytest.raises(ValueError, match="max_positions=50"):
        m(torch.randn(1, 2, 8, 8))


def test_add_coords_values():
    x = torch.randn(2, 3, 4, 5)
    out = AddCoords(3)(x)
    assert out.shape == (2, 5, 4, 5)
    torch.testing.assert_close(out[:, :3], x)
    for b in range(2):
        for i in range(4):
            for j in range(5):
                assert out[b, 3, i, j].item() == pytest.approx(-1 + 2 * j / 4)  # x channel
                assert out[b, 4, i, j].item() == pytest.approx(-1 + 2 * i / 3)  # y channel
    assert AddCoords().out_channels is None and AddCoords(3).out_channels == 5


def detr_position_embedding_sine(mask: torch.Tensor, num_pos_feats, temperature, normalize):
    """Transcription of DETR's PositionEmbeddingSine.forward (models/position_encoding.py)."""
    scale = 2 * math.pi
    not_mask = ~mask
    y_embed = not_mask.cumsum(1, dtype=torch.float64)
    x_embed = not_mask.cumsum(2, dtype=torch.float64)
    if normalize:
        eps = 1e-6
        y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
        x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float64)
    dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


@pytest.mark.parametrize(
    "channels, normalize, temperature", [(8, True, 10000), (16, False, 10000), (12, True, 20)]
)
def test_sine_embedding_matches_detr(channels, normalize, temperature):
    x = _x(2, channels, 3, 5, seed=16)
    m = SinePositionEmbedding(channels, temperature=temperature, normalize=normalize)
    pos = detr_position_embedding_sine(
        torch.zeros(1, 3, 5, dtype=torch.bool), channels // 2, temperature, normalize
    )
    torch.testing.assert_close(m(x), x + pos)
    assert m.out_channels == channels


def test_sine_embedding_odd_half_width_and_validation():
    # C/2 odd (DETR's code cannot): channel i of a half is sin for even i, cos for odd i.
    x = torch.zeros(1, 6, 2, 3, dtype=DT)
    out = SinePositionEmbedding(6, normalize=False)(x)
    for i in range(3):
        dim_t = 10000 ** (2 * (i // 2) / 3)
        trig = math.sin if i % 2 == 0 else math.cos
        assert out[0, i, 1, 2].item() == pytest.approx(trig(2 / dim_t))  # y half, y = 2 (cumsum)
        assert out[0, 3 + i, 1, 2].item() == pytest.approx(trig(3 / dim_t))  # x half, x = 3
    with pytest.raises(ValueError, match="even"):
        SinePositionEmbedding(7)


# ---------------------------------------------------------------- factories
def test_factories_build_every_kind_with_out_channels():
    x = torch.randn(1, 8, 6, 5)
    expected = {
        ("semantic", "none"): torch.nn.Identity,
        ("semantic", "attention"): NonLocalBlock,
        ("semantic", "scm"): SemanticCorrelationModule,
        ("position", "none"): torch.nn.Identity,
        ("position", "coords"): AddCoords,
        ("position", "sine"): SinePositionEmbedding,
        ("position", "icm"): InstanceCorrelationModule,
        ("position", "icm-coords"): InstanceCorrelationModule,
    }
    for (branch, kind), cls in expected.items():
        build = build_semantic_module if branch == "semantic" else build_position_module
        m = build(kind, 8, hidden_channels=4)
        assert isinstance(m, cls)
        assert m(x).shape[1] == m.out_channels == (10 if kind == "coords" else 8)
    scm = build_semantic_module("scm", 8, num_levels=3, mode="global", max_global_positions=99)
    assert (scm.mode, scm.num_levels, scm.max_global_positions) == ("global", 3, 99)
    assert build_semantic_module("attention", 8, max_global_positions=7).max_positions == 7
    icm = build_position_module("icm", 8, num_levels=3, num_refs=(4, 2), hidden_channels=5)
    assert (icm.num_refs, icm.theta.hidden_channels) == ((4, 2), 5)
    with pytest.raises(ValueError, match="none, attention, scm"):
        build_semantic_module("deformable", 8)
    with pytest.raises(ValueError, match="none, coords, sine, icm"):
        build_position_module("attention", 8)


# ---------------------------------------------------------------- icm-coords (our extension)
def test_position_kinds_are_one_list_shared_with_the_config():
    from cfnet.config import choices, get_config, validate
    from cfnet.modules import POSITION_MODULES, SEMANTIC_MODULES

    assert tuple(POSITION_MODULES) == ("none", "coords", "sine", "icm", "icm-coords")
    assert choices("model.instance.position") == tuple(POSITION_MODULES)
    assert choices("model.semantic.module") == tuple(SEMANTIC_MODULES) == ("none", "attention", "scm")
    validate(get_config("shapes-tiny", ["model.instance.position=icm-coords"]))
    with pytest.raises(ValueError, match="none, coords, sine, icm, icm-coords"):
        build_position_module("icm-coord", 8)


def test_icm_coords_differs_from_icm_only_in_the_theta_input_width():
    torch.manual_seed(0)
    icm = build_position_module("icm", 8, num_levels=3, num_refs=4, hidden_channels=5)
    torch.manual_seed(0)
    ext = build_position_module("icm-coords", 8, num_levels=3, num_refs=4, hidden_channels=5)
    assert isinstance(ext, InstanceCorrelationModule) and ext.theta_coords and not icm.theta_coords
    a, b = icm.state_dict(), ext.state_dict()
    assert list(a) == list(b)
    for key in a:
        if key == "theta.conv.weight":
            assert b[key].shape == (5, 10, 3, 3) and a[key].shape == (5, 8, 3, 3)
        else:
            assert a[key].shape == b[key].shape, key
    assert ext.theta.channels == 10 and ext.out_channels == icm.out_channels == 8
    x = torch.randn(2, 8, 6, 7)
    assert ext(x).shape == icm(x).shape == (2, 8, 6, 7)
    assert ext.correlation_features(x).shape == icm.correlation_features(x).shape == (2, 16, 6, 7)
    # θ is the predictor applied to [x, CoordConv x, CoordConv y] (linspace(-1, 1), x first).
    coords = torch.stack(
        [torch.linspace(-1, 1, 7)[None, :].expand(6, 7), torch.linspace(-1, 1, 6)[:, None].expand(6, 7)]
    )
    th, tv = ext.theta(torch.cat([x, coords[None].expand(2, -1, -1, -1)], dim=1))
    eth, etv = ext.params(x)
    assert torch.equal(th, eth) and torch.equal(tv, etv)
    assert "theta_coords=True" in repr(ext)
    with pytest.raises(ValueError, match="theta_coords"):
        InstanceCorrelationModule(8, num_refs=4, hidden_channels=2, theta_coords=1)
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        ext.correlation_features(torch.randn(1, 10, 6, 7))


def test_icm_coords_trains_a_step():
    torch.manual_seed(0)
    m = build_position_module("icm-coords", 6, num_levels=2, num_refs=3, hidden_channels=4)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x, target = torch.randn(2, 6, 5, 5), torch.randn(2, 6, 5, 5)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    loss = (m(x) - target).pow(2).mean()
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    opt.step()
    assert all(not torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert (m(x) - target).pow(2).mean() < loss


def test_icm_coords_correlations_see_position_on_a_constant_input():
    """On a constant map, plain ICM's θ (hence c_u) is the same at every interior pixel (only the
    zero padding at the border differs); with the CoordConv channels it varies with position."""
    torch.manual_seed(0)
    x = torch.ones(1, 8, 9, 11)
    for kind in ("icm", "icm-coords"):
        torch.manual_seed(1)
        m = build_position_module(kind, 8, num_levels=3, num_refs=4, hidden_channels=6)
        with torch.no_grad():
            c = m.correlation_features(x)[0, :, 1:-1, 1:-1]  # interior: the 3×3 conv sees no padding
        spread = (c - c[:, :1, :1]).abs().amax()
        if kind == "icm":
            assert spread < 1e-6, spread
        else:
            assert spread > 1e-3, spread
            # and it separates the two halves of the map, as needed for touching instances
            left, right = c[:, :, :4].mean((1, 2)), c[:, :, -4:].mean((1, 2))
            assert (left - right).abs().max() > 1e-3


def test_keyword_factories_take_their_defaults_from_the_config():
    from cfnet.config import Config, CorrelationConfig, SemanticConfig

    scm = build_semantic_module("scm", 8)
    assert scm.theta.hidden_channels == CorrelationConfig.hidden_channels
    defaults = (SemanticConfig.scm_mode, SemanticConfig.max_global_positions)
    assert (scm.mode, scm.max_global_positions) == defaults
    cfg = Config()
    cfg.model.correlation.num_refs = 3
    icm = build_position_module("icm", 8, cfg, hidden_channels=5)
    assert (icm.num_refs, icm.theta.hidden_channels) == ((3, 3), 5)
    assert cfg.model.correlation.hidden_channels == CorrelationConfig.hidden_channels  # not mutated
    with pytest.raises(TypeError, match="unknown module option 'hiden_channels'"):
        build_position_module("icm", 8, hiden_channels=5)
    with pytest.raises(TypeError, match="hidden_channels"):
        SemanticCorrelationModule(8, num_levels=3)  # a config-supplied size has no default here
