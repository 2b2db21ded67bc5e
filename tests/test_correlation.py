"""cfnet.correlation against literal loop transcriptions of the paper's Eqs. 5–6 (float64)."""

from __future__ import annotations

import math

import pytest
import torch
from reference import g_loop

from cfnet.correlation import (
    correlation_1d,
    correlation_1d_polar,
    correlation_2d,
    fourier_basis,
    linear_coefficients,
    num_levels_from_theta,
    pixel_coords,
)

DT = torch.float64



pytestmark = pytest.mark.usefixtures("one_torch_thread")




def _rand_theta(*shape: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=DT)


@pytest.mark.parametrize(
    "lead, n_levels, coords, length",
    [
        ((4,), 5, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 7),
        ((2, 3), 3, [0.25, 1.5, 7.9, -0.3], 8.0),
        ((), 1, [0.0, 2.0, 4.5], 5),
        ((2, 1, 3), 7, [float(j) for j in range(11)], 11),
    ],
)
def test_correlation_1d_matches_eq5_loop(lead, n_levels, coords, length):
    theta = _rand_theta(*lead, 2 * n_levels + 1)
    out = correlation_1d(theta, torch.tensor(coords, dtype=DT), length)
    assert out.shape == (*lead, len(coords))
    assert out.dtype == DT
    flat_theta = theta.reshape(-1, theta.shape[-1])
    flat_out = out.reshape(-1, len(coords))
    for row in range(flat_theta.shape[0]):
        for k, j in enumerate(coords):
            expected = g_loop(flat_theta[row].tolist(), j, length)
            assert flat_out[row, k].item() == pytest.approx(expected, abs=1e-12)


def test_polar_form_matches_eq5_loop():
    theta = _rand_theta(3, 11, seed=1)
    coords = [0.0, 0.5, 3.0, 8.2]
    out = correlation_1d_polar(theta, torch.tensor(coords, dtype=DT), 9)
    for row in range(3):
        for k, j in enumerate(coords):
            assert out[row, k].item() == pytest.approx(g_loop(theta[row].tolist(), j, 9), abs=1e-12)


@pytest.mark.parametrize("n_levels", [1, 3, 5, 7])
def test_fast_form_equals_polar_form(n_levels):
    theta = _rand_theta(2, 6, 5, 2 * n_levels + 1, seed=n_levels) * 3
    coords = torch.linspace(-2.0, 40.0, 37, dtype=DT)
    fast = correlation_1d(theta, coords, 33)
    polar = correlation_1d_polar(theta, coords, 33)
    torch.testing.assert_close(fast, polar, rtol=0, atol=1e-11)


def test_fourier_basis_and_coefficients_are_the_two_halves():
    n_levels, length = 4, 6.0
    coords = [0.0, 1.0, 2.5, 5.0]
    basis = fourier_basis(n_levels, torch.tensor(coords, dtype=DT), length)
    assert basis.shape == (2 * n_levels + 1, len(coords))
    for k, j in enumerate(coords):
        assert basis[0, k].item() == 1.0
        for n in range(1, n_levels + 1):
            assert basis[n, k].item() == pytest.approx(math.sin(n * math.pi / length * j), abs=1e-14)
            assert basis[n_levels + n, k].item() == pytest.approx(
                math.cos(n * math.pi / length * j), abs=1e-14
            )

    theta = _rand_theta(5, 2 * n_levels + 1, seed=3)
    coef = linear_coefficients(theta)
    for r in range(5):
        t = theta[r].tolist()
        assert coef[r, 0].item() == t[0]
        for n in range(1, n_levels + 1):
            a, psi = t[n], t[n_levels + n]
            assert coef[r, n].item() == pytest.approx(a * math.cos(psi), abs=1e-14)
            assert coef[r, n_levels + n].item() == pytest.approx(a * math.sin(psi), abs=1e-14)
    torch.testing.assert_close(
        coef @ basis, correlation_1d_polar(theta, torch.tensor(coords, dtype=DT), length)
    )


def test_mirrored_extension_has_period_2L_not_L():
    # ω' = π/L (Eq. 4): G repeats after 2L, and generally not after L (ω = 2π/L would).
    length = 10
    theta = _rand_theta(4, 11, seed=4)
    j = torch.linspace(0, length - 1, 10, dtype=DT)
    base = correlation_1d(theta, j, length)
    torch.testing.assert_close(correlation_1d(theta, j + 2 * length, length), base, rtol=0, atol=1e-10)
    assert (correlation_1d(theta, j + length, length) - base).abs().max() > 1e-3
    # Same θ, same curve over the normalised coordinate j/L at any resolution.
    torch.testing.assert_close(correlation_1d(theta, 3 * j, 3 * length), base, rtol=0, atol=1e-10)


@pytest.mark.parametrize("height, width, n_hor, n_ver", [(3, 5, 2, 2), (6, 4, 3, 1)])
def test_correlation_2d_matches_eq6_loop(height, width, n_hor, n_ver):
    theta_hor = _rand_theta(2, 3, 2 * n_hor + 1, seed=5)
    theta_ver = _rand_theta(2, 3, 2 * n_ver + 1, seed=6)
    xs = pixel_coords(width, dtype=DT)
    ys = pixel_coords(height, dtype=DT) + 0.25
    out = correlation_2d(theta_hor, theta_ver, xs, ys, width, height)
    assert out.shape == (2, 3, height, width)
    for a in range(2):
        for b in range(3):
            for iy, vy in enumerate(ys.tolist()):
                for ix, vx in enumerate(xs.tolist()):
                    expected = g_loop(theta_hor[a, b].tolist(), vx, width) * g_loop(
                        theta_ver[a, b].tolist(), vy, height
                    )
                    assert out[a, b, iy, ix].item() == pytest.approx(expected, abs=1e-12)


def test_correlation_2d_uses_width_for_x_and_height_for_y():
    # A wrong pairing (π/height on x) changes the values when H ≠ W.
    theta_hor, theta_ver = _rand_theta(11, seed=7), _rand_theta(11, seed=8)
    xs, ys = pixel_coords(7, dtype=DT), pixel_coords(4, dtype=DT)
    out = correlation_2d(theta_hor, theta_ver, xs, ys, 7, 4)
    swapped = correlation_1d(theta_ver, ys, 7)[:, None] * correlation_1d(theta_hor, xs, 4)[None, :]
    assert (out - swapped).abs().max() > 1e-3


def test_num_levels_and_pixel_coords():
    assert num_levels_from_theta(torch.zeros(3, 11)) == 5
    assert num_levels_from_theta(torch.zeros(1)) == 0
    with pytest.raises(ValueError, match="odd"):
        num_levels_from_theta(torch.zeros(2, 10))
    with pytest.raises(ValueError, match="0-d"):
        num_levels_from_theta(torch.tensor(1.0))
    c = pixel_coords(4, dtype=DT)
    assert c.dtype == DT and c.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert pixel_coords(3).is_floating_point()
    with pytest.raises(ValueError, match="length"):
        pixel_coords(0)


def test_input_validation_names_the_argument():
    theta = torch.zeros(2, 11)
    with pytest.raises(ValueError, match="length"):
        correlation_1d(theta, torch.arange(3.0), 0)
    with pytest.raises(ValueError, match="coords"):
        correlation_1d(theta, torch.zeros(2, 3), 5)
    with pytest.raises(ValueError, match="odd"):
        correlation_1d(torch.zeros(2, 4), torch.arange(3.0), 5)
    with pytest.raises(ValueError, match="floating"):
        correlation_1d(torch.zeros(2, 11, dtype=torch.long), torch.arange(3.0), 5)
    with pytest.raises(ValueError, match="width"):
        correlation_2d(theta, theta, torch.arange(3.0), torch.arange(2.0), -1, 2)
    with pytest.raises(ValueError, match="height"):
        correlation_2d(theta, theta, torch.arange(3.0), torch.arange(2.0), 3, 0)
    with pytest.raises(ValueError, match="broadcastable"):
        correlation_2d(torch.zeros(2, 11), torch.zeros(3, 11), torch.arange(3.0), torch.arange(2.0), 3, 2)
    with pytest.raises(ValueError, match="num_levels"):
        fourier_basis(-1, torch.arange(3.0), 3)
    # Plain sequences of positions are accepted.
    assert correlation_1d(theta, [0, 1, 2], 3).shape == (2, 3)


def test_gradcheck_correlation_1d_and_2d():
    theta = _rand_theta(2, 3, 7, seed=9).requires_grad_()
    coords = (torch.rand(4, dtype=DT) * 5).requires_grad_()
    assert torch.autograd.gradcheck(lambda t, c: correlation_1d(t, c, 5.0), (theta, coords))
    theta_ver = _rand_theta(2, 3, 5, seed=10).requires_grad_()
    ys = pixel_coords(3, dtype=DT)
    assert torch.autograd.gradcheck(
        lambda th, tv: correlation_2d(th, tv, coords.detach(), ys, 5.0, 3), (theta, theta_ver)
    )
