"""cfnet.fourier_fit: least-squares N-level fits (Eqs. 3–6) against loop transcriptions (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cfnet.correlation import correlation_1d, linear_coefficients
from cfnet.fourier_fit import (
    fit_errors,
    fit_flattened_1d,
    fit_separable_2d,
    fit_sequence,
    periodic_extension,
    theta_from_coefficients,
)

DT = torch.float64


def g_loop(theta: list[float], j: float, omega: float) -> float:
    """Eq. 5 literally: A0 + Σ_n A_n sin(n ω j + ψ_n)."""
    n_levels = (len(theta) - 1) // 2
    value = theta[0]
    for n in range(1, n_levels + 1):
        value += theta[n] * math.sin(n * omega * j + theta[n_levels + n])
    return value


def lstsq_loop(values: list[float], n_levels: int, omega: float) -> np.ndarray:
    """The fitted samples of a least-squares fit whose design matrix is built entry by entry."""
    rows = []
    for j in range(len(values)):
        row = [1.0]
        row += [math.sin(n * omega * j) for n in range(1, n_levels + 1)]
        row += [math.cos(n * omega * j) for n in range(1, n_levels + 1)]
        rows.append(row)
    a = np.array(rows)
    coef = np.linalg.lstsq(a, np.array(values), rcond=None)[0]
    return a @ coef


def test_theta_from_coefficients_inverts_linear_coefficients():
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(4, 11, generator=gen, dtype=DT)
    theta[:, 1:6] = theta[:, 1:6].abs() + 0.1  # A_n > 0 ...
    theta[:, 6:] = torch.remainder(theta[:, 6:] + math.pi, 2 * math.pi) - math.pi  # ... ψ in [-π, π)
    torch.testing.assert_close(theta_from_coefficients(linear_coefficients(theta)), theta, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mirrored", [True, False])
@pytest.mark.parametrize("n_levels", [0, 1, 3, 5])
def test_fit_matches_loop_least_squares(mirrored, n_levels):
    gen = torch.Generator().manual_seed(n_levels)
    values = torch.rand(23, generator=gen, dtype=DT).tolist()
    length = len(values)
    omega = math.pi / length if mirrored else 2 * math.pi / length
    fit = fit_sequence(values, n_levels, mirrored=mirrored)
    expected = lstsq_loop(values, n_levels, omega)
    np.testing.assert_allclose(fit.fitted.numpy(), expected, atol=1e-10)
    assert fit.rmse == pytest.approx(float(np.sqrt(np.mean((expected - np.array(values)) ** 2))), abs=1e-10)
    # θ redraws the same samples, through the model's own function and through Eq. 5 literally.
    js = torch.arange(length, dtype=DT)
    redrawn = correlation_1d(fit.theta, js, fit.basis_length)
    torch.testing.assert_close(redrawn, fit.fitted, rtol=0, atol=1e-10)
    for j in (0, 7, length - 1):
        assert g_loop(fit.theta.tolist(), j, omega) == pytest.approx(fit.fitted[j].item(), abs=1e-10)
    torch.testing.assert_close(fit.evaluate(js), fit.fitted, rtol=0, atol=1e-10)
    assert fit.num_levels == n_levels


def test_fit_recovers_a_function_it_can_represent():
    theta = torch.tensor([0.3, 1.0, -0.5, 0.25, 0.4, 2.0, -1.0], dtype=DT)  # N = 3
    values = correlation_1d(theta, torch.arange(32, dtype=DT), 32)
    fit = fit_sequence(values, 3)
    assert fit.rmse < 1e-12
    torch.testing.assert_close(fit.evaluate(torch.linspace(0, 31, 100, dtype=DT)),
                               correlation_1d(theta, torch.linspace(0, 31, 100, dtype=DT), 32))


def test_error_never_increases_with_levels_and_mirror_avoids_the_border_jump():
    ramp = torch.linspace(0, 1, 48, dtype=DT)  # C[0] != C[L-1]: the wrap of Eq. 3 is a jump
    levels = range(1, 10)
    mirrored = fit_errors(ramp, levels, mirrored=True)
    plain = fit_errors(ramp, levels, mirrored=False)
    assert all(b <= a + 1e-12 for a, b in zip(mirrored, mirrored[1:]))
    assert all(b <= a + 1e-12 for a, b in zip(plain, plain[1:]))
    assert all(m < p for m, p in zip(mirrored, plain))
    # The plain fit's error concentrates at the borders (Gibbs ringing of the glued jump).
    resid = (fit_sequence(ramp, 5, mirrored=False).fitted - ramp).abs()
    assert resid[[0, -1]].min() > 3 * resid[16:32].mean()


def test_plain_extension_is_exact_for_a_full_period_sine():
    js = torch.arange(40, dtype=DT)
    values = torch.sin(2 * math.pi * js / 40 + 0.3)
    assert fit_sequence(values, 1, mirrored=False).rmse < 1e-12
    assert fit_sequence(values, 1, mirrored=True).rmse > 1e-3


def test_underdetermined_fit_interpolates():
    values = [0.0, 1.0, 0.0, 2.0, -1.0]
    assert fit_sequence(values, 4).rmse < 1e-10


@pytest.mark.parametrize("mirrored", [True, False])
def test_periodic_extension_matches_eqs_3_and_4(mirrored):
    values = [0.5, 2.0, -1.0, 3.0]
    length = len(values)
    out = periodic_extension(values, periods=3, mirrored=mirrored).tolist()
    for j, v in enumerate(out):
        if mirrored:  # Eq. 4 then Eq. 3 with period 2L
            k = j % (2 * length)
            expected = values[k] if k < length else values[2 * length - k - 1]
        else:  # Eq. 3
            expected = values[j % length]
        assert v == expected
    assert len(out) == 3 * length * (2 if mirrored else 1)


def test_separable_fit_is_exact_on_a_product_of_axial_functions():
    th_x = torch.tensor([1.0, 0.5, -0.2, 0.3, 1.0], dtype=DT)
    th_y = torch.tensor([0.8, 0.1, 0.4, -0.7, 0.2], dtype=DT)
    gx = correlation_1d(th_x, torch.arange(13, dtype=DT), 13)
    gy = correlation_1d(th_y, torch.arange(9, dtype=DT), 9)
    target = gy[:, None] * gx[None, :]
    fit = fit_separable_2d(target, 2)
    assert fit.rmse < 1e-10
    torch.testing.assert_close(fit.fitted, target)
    # And the θs it reports draw that map through Eq. 6.
    redraw = correlation_1d(fit.theta_ver, torch.arange(9, dtype=DT), 9)[:, None] * correlation_1d(
        fit.theta_hor, torch.arange(13, dtype=DT), 13
    )
    torch.testing.assert_close(redraw, target)


def test_flattened_function_suffers_false_adjacency():
    # A box in the middle of a 16x16 map: separable, but in the flattened view it is 8 short
    # pulses, which one 5-level function over 256 positions cannot draw.
    target = torch.zeros(16, 16, dtype=DT)
    target[4:12, 4:12] = 1.0
    sep = fit_separable_2d(target, 5)
    flat = fit_flattened_1d(target, 5)
    assert flat.fitted.shape == (256,)
    assert sep.rmse < 0.5 * flat.rmse


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fit_sequence([], 3), "non-empty 1-D"),
        (lambda: fit_sequence([[1.0, 2.0]], 3), "1-D"),
        (lambda: fit_sequence([1.0, float("nan")], 3), "NaN"),
        (lambda: fit_sequence([1.0, 2.0], -1), "num_levels"),
        (lambda: fit_sequence([1.0, 2.0], 2.5), "num_levels"),
        (lambda: periodic_extension([1.0], periods=0), "periods"),
        (lambda: fit_separable_2d([1.0, 2.0], 3), "2-D"),
        (lambda: fit_flattened_1d("abc", 3), "2-D"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
