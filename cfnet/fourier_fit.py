"""What the correlation function can represent: least-squares fits of sampled sequences (paper §3.2).

The model predicts θ from features and never fits anything; this module answers the question
behind Eqs. 3–6 directly: given a correlation sequence ``C_i`` (Eq. 2), how close can
``G(θ, j)`` of Eq. 5 with N levels get, and what do the mirrored extension (Eq. 4) and the
separable 2-D product (Eq. 6) buy? Notebook ``01_dft_correlation`` is built on it.

Fits are linear least squares on the fast basis of :mod:`cfnet.correlation`
(``G(θ, ·) = c(θ) · B``), so they are exact optima, not gradient descent:

- ``mirrored=True`` (Eq. 4, the model's choice): basis at ω' = π/L. The signal read forwards and
  backwards is continuous where it wraps, so no jump has to be fitted at the border.
- ``mirrored=False`` (Eq. 3): basis at ω = 2π/L, the plain periodic extension, which glues
  ``C[L-1]`` to ``C[0]``; a sequence whose ends differ then needs many levels near the borders
  (Gibbs ringing). Implemented as ``fourier_basis(N, j, L/2)`` since ω' = π/length there.

θ is returned in the model's amplitude/phase layout ``[A0, A_1..A_N, ψ_1..ψ_N]``, so
``correlation_1d(fit.theta, j, fit.basis_length)`` redraws the fitted curve.
When 2N+1 exceeds the number of samples the system is under-determined and the minimum-norm
solution is returned (it interpolates the samples).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from cfnet._checks import check_int
from cfnet.correlation import correlation_1d, fourier_basis, num_levels_from_theta, pixel_coords

__all__ = [
    "FourierFit",
    "SeparableFit",
    "theta_from_coefficients",
    "fit_sequence",
    "fit_errors",
    "periodic_extension",
    "fit_separable_2d",
    "fit_flattened_1d",
]


@dataclass
class FourierFit:
    """A least-squares fit of one 1-D sequence with N Fourier levels.

    Attributes:
        theta: ``(2N+1,)`` amplitude/phase parameters ``[A0, A_1..A_N, ψ_1..ψ_N]`` (Eq. 5).
        coefficients: ``(2N+1,)`` the same in the linear form ``[A0, A_n cos ψ_n, A_n sin ψ_n]``.
        fitted: ``(L,)`` G(θ, j) at the sample positions j = 0..L-1.
        rmse: root-mean-square error of ``fitted`` against the samples.
        basis_length: the ``length`` argument that reproduces the curve with
            :func:`cfnet.correlation.correlation_1d`: L when mirrored (ω' = π/L), L/2 when not
            (ω = 2π/L).
        mirrored: which extension the fit assumed (Eq. 4 if True, Eq. 3 if False).
    """

    theta: Tensor
    coefficients: Tensor
    fitted: Tensor
    rmse: float
    basis_length: float
    mirrored: bool

    @property
    def num_levels(self) -> int:
        return num_levels_from_theta(self.theta)

    def evaluate(self, coords: Tensor | Sequence[float]) -> Tensor:
        """G(θ, j) at arbitrary real positions (e.g. a dense grid for a smooth plot)."""
        return correlation_1d(self.theta, coords, self.basis_length)


@dataclass
class SeparableFit:
    """A 2-D map approximated as the product of two axial N-level functions (Eq. 6)."""

    fitted: Tensor  # (H, W) G(θ^hor, x) · G(θ^ver, y)
    theta_hor: Tensor  # (2N+1,)
    theta_ver: Tensor  # (2N+1,)
    rmse: float


def theta_from_coefficients(coefficients: Tensor) -> Tensor:
    """Inverse of :func:`cfnet.correlation.linear_coefficients`: ``[A0, s_n, k_n] -> [A0, A_n, ψ_n]``.

    From A·sin(x + ψ) = s·sin x + k·cos x with s = A cos ψ and k = A sin ψ:
    A = hypot(s, k) ≥ 0, ψ = atan2(k, s).
    """
    n = num_levels_from_theta(coefficients)
    s = coefficients[..., 1 : n + 1]
    k = coefficients[..., n + 1 :]
    return torch.cat([coefficients[..., :1], torch.hypot(s, k), torch.atan2(k, s)], dim=-1)


def _as_sequence(values: Tensor | Sequence[float] | object, name: str = "values") -> Tensor:
    try:
        seq = torch.as_tensor(values, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{name} must be a 1-D sequence of numbers: {e}") from None
    if seq.dim() != 1 or seq.numel() < 1:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {tuple(seq.shape)}")
    if not torch.isfinite(seq).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return seq


def _check_levels(num_levels: object) -> int:
    return check_int(num_levels, "num_levels", 0, " (N of Eq. 5)")


def fit_sequence(values: Tensor | Sequence[float], num_levels: int, *, mirrored: bool = True) -> FourierFit:
    """Least-squares fit of the samples ``values[j]``, j = 0..L-1, by G(θ, j) with N levels (Eq. 5).

    ``mirrored=True`` uses the mirrored extension of Eq. 4 (ω' = π/L, what the model does);
    ``mirrored=False`` the plain periodic one of Eq. 3 (ω = 2π/L). Computed in float64.
    """
    seq = _as_sequence(values)
    n = _check_levels(num_levels)
    length = seq.numel()
    basis_length = float(length) if mirrored else length / 2.0
    coords = pixel_coords(length, dtype=torch.float64)
    basis = fourier_basis(n, coords, basis_length)  # (2N+1, L)
    # Minimum-norm least squares (gelsd handles rank-deficient / under-determined systems).
    coef = torch.linalg.lstsq(basis.T, seq[:, None], driver="gelsd").solution[:, 0]
    fitted = coef @ basis
    rmse = float(torch.sqrt(torch.mean((fitted - seq) ** 2)))
    return FourierFit(
        theta=theta_from_coefficients(coef),
        coefficients=coef,
        fitted=fitted,
        rmse=rmse,
        basis_length=basis_length,
        mirrored=mirrored,
    )


def fit_errors(
    values: Tensor | Sequence[float], levels: Iterable[int], *, mirrored: bool = True
) -> list[float]:
    """RMSE of :func:`fit_sequence` for each N in ``levels`` (the error-against-N curve)."""
    seq = _as_sequence(values)
    return [fit_sequence(seq, n, mirrored=mirrored).rmse for n in levels]


def periodic_extension(
    values: Tensor | Sequence[float], periods: int = 2, *, mirrored: bool = True
) -> Tensor:
    """The periodic signal a Fourier series actually fits, over ``periods`` periods.

    ``mirrored=False``: T[j] = C[j mod L] (Eq. 3), period L. ``mirrored=True``: C' of Eq. 4
    (C followed by its mirror image, C'[j] = C[2L-j-1] for L ≤ j < 2L) repeated, period 2L.
    """
    seq = _as_sequence(values)
    if isinstance(periods, bool) or not isinstance(periods, int) or periods < 1:
        raise ValueError(f"periods must be a positive int, got {periods!r}")
    one = torch.cat([seq, seq.flip(0)]) if mirrored else seq
    return one.repeat(periods)


def _as_map(target: Tensor | object) -> Tensor:
    try:
        m = torch.as_tensor(target, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"target must be a 2-D array: {e}") from None
    if m.dim() != 2 or m.numel() < 1:
        raise ValueError(f"target must be a non-empty 2-D (H, W) map, got shape {tuple(m.shape)}")
    if not torch.isfinite(m).all():
        raise ValueError("target contains NaN or infinite values")
    return m


def fit_separable_2d(target: Tensor | object, num_levels: int) -> SeparableFit:
    """Approximate a 2-D correlation map by G(θ^hor, x)·G(θ^ver, y) (Eq. 6), N levels per axis.

    The best separable map is the rank-1 truncated SVD ``σ·a·bᵀ``; each factor (scaled by √σ)
    is then fitted by an N-level mirrored function along its own axis (ω' = π/W for x, π/H for y).
    """
    m = _as_map(target)
    n = _check_levels(num_levels)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    scale = torch.sqrt(s[0])
    col_factor = u[:, 0] * scale  # varies with y
    row_factor = vh[0] * scale  # varies with x
    fit_y = fit_sequence(col_factor, n)
    fit_x = fit_sequence(row_factor, n)
    fitted = fit_y.fitted[:, None] * fit_x.fitted[None, :]
    rmse = float(torch.sqrt(torch.mean((fitted - m) ** 2)))
    return SeparableFit(fitted=fitted, theta_hor=fit_x.theta, theta_ver=fit_y.theta, rmse=rmse)


def fit_flattened_1d(target: Tensor | object, num_levels: int) -> FourierFit:
    """Fit the row-major flattening of a 2-D map with ONE N-level function over H·W positions.

    The "false adjacency" of §3.2's discussion: in the flattened view the last pixel of row r
    and the first of row r+1 are neighbours, so a smooth function ties the two image borders
    together. ``fit.fitted.reshape(H, W)`` is the map it draws.
    """
    m = _as_map(target)
    return fit_sequence(m.reshape(-1), _check_levels(num_levels))
