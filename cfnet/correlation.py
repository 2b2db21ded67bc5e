"""The DFT correlation function of CFNet (paper §3.2, Eqs. 2–6).

For a pixel ``i`` on a 1-D axis of length ``L``, the correlations with every location,
``C_i = [cor(i, 0), …, cor(i, L-1)]`` (Eq. 2), are modelled as samples of a smooth function
of the coordinate ``j`` whose parameters ``θ_i`` are predicted from the features:

    G(θ, j) = A0 + Σ_{n=1..N} A_n · sin(n·ω'·j + ψ_n),   ω' = π / L          (Eq. 5)

with ``θ = [A0, A_1..A_N, ψ_1..ψ_N]`` (2N+1 numbers, laid out in that order on the last
dimension of every ``theta`` tensor here).

Why ω' = π/L and not 2π/L. A Fourier series is periodic. Extending ``C_i`` periodically
with period ``L`` (Eq. 3, ω = 2π/L) glues ``C_i[L-1]`` to ``C_i[0]``: two image borders that
usually have different correlations with ``i`` would become neighbours, and the series would
have to fit a jump there (ringing). Eq. 4 first appends the mirror image of ``C_i``
(``C'_i[j] = C_i[2L-j-1]`` for ``L ≤ j < 2L``), so the signal read forwards and then
backwards is continuous everywhere, including where it wraps; the extension therefore has
period ``2L`` and fundamental frequency ω' = ω/2 = π/L. Only ``j ∈ [0, L)`` is ever
evaluated. Since ω'·j = π·(j/L), the same θ draws the same curve over the normalised
coordinate ``j/L`` at any feature-map resolution. ``j`` is real-valued: reference points of
the ICM sit at cell centres, and may even fall slightly outside [0, L) on maps smaller than
the reference grid; G is defined for every real ``j``, so no range is enforced.

Fast exact form (the path every module uses). Since
``A·sin(x + ψ) = (A cos ψ)·sin x + (A sin ψ)·cos x``,

    G(θ, ·) = c(θ) · B,   c(θ) = [A0, A_n cos ψ_n (n=1..N), A_n sin ψ_n (n=1..N)],
                          B    = [1, sin(n ω' j) (n=1..N), cos(n ω' j) (n=1..N)]   (2N+1, K)

``B`` depends only on the coordinates, so evaluating G for every pixel of a map against K
positions is one matmul of a (…, 2N+1) by a (2N+1, K) tensor: the trigonometry costs
O(N·(pixels + K)) instead of O(N·pixels·K). ``correlation_1d_polar`` keeps the literal
amplitude/phase form of Eq. 5 as the reference implementation.

2-D (Eq. 6): cor_2d(u, v) = G(θ_u^hor, v_x) · G(θ_u^ver, v_y), with ω' = π/width for the
horizontal function and π/height for the vertical one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "num_levels_from_theta",
    "pixel_coords",
    "fourier_basis",
    "linear_coefficients",
    "correlation_1d",
    "correlation_1d_polar",
    "correlation_2d",
]


def num_levels_from_theta(theta: Tensor) -> int:
    """N of a θ tensor whose last dimension is 2N+1 (``[A0, A_1..A_N, ψ_1..ψ_N]``, Eq. 5)."""
    if not isinstance(theta, Tensor):
        raise TypeError(f"theta must be a torch.Tensor, got {type(theta).__name__}")
    if theta.dim() == 0:
        raise ValueError("theta must have a last dimension of size 2N+1, got a 0-d tensor")
    size = theta.shape[-1]
    if size % 2 != 1:
        raise ValueError(
            f"theta's last dimension must be odd (2N+1 = [A0, A_1..A_N, psi_1..psi_N]), got {size}"
        )
    return (size - 1) // 2


def pixel_coords(
    length: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """Integer pixel positions ``0, 1, …, length-1`` of an axis, as a float tensor."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
    return torch.arange(length, device=device, dtype=dtype or torch.get_default_dtype())


def _check_length(length: float, name: str = "length") -> float:
    if isinstance(length, Tensor):
        if length.numel() != 1:
            raise ValueError(f"{name} must be a positive number, got a tensor of shape {tuple(length.shape)}")
        length = float(length)
    if isinstance(length, bool) or not isinstance(length, (int, float)) or not length > 0:
        raise ValueError(f"{name} must be a positive number (the axis length L), got {length!r}")
    if not math.isfinite(length):
        raise ValueError(f"{name} must be finite, got {length!r}")
    return float(length)


def _as_coords(coords: Tensor | Sequence[float], like: Tensor | None, name: str = "coords") -> Tensor:
    if not isinstance(coords, Tensor):
        try:
            coords = torch.as_tensor(coords, dtype=like.dtype if like is not None else None)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"{name} must be a 1-D tensor of positions: {e}") from None
    if coords.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of positions (K,), got shape {tuple(coords.shape)}")
    if like is not None:
        if not like.is_floating_point():
            raise ValueError(f"theta must be a floating-point tensor, got {like.dtype}")
        coords = coords.to(device=like.device, dtype=like.dtype)
    elif not coords.is_floating_point():
        coords = coords.to(torch.get_default_dtype())
    return coords


def fourier_basis(num_levels: int, coords: Tensor | Sequence[float], length: float) -> Tensor:
    """The fixed basis ``B`` of the fast form: shape ``(2N+1, K)``.

    Rows: ``1``, then ``sin(n·ω'·j)`` for n = 1..N, then ``cos(n·ω'·j)`` for n = 1..N, with
    ω' = π/``length`` (Eq. 4–5) and ``j`` = ``coords``. Paired with
    :func:`linear_coefficients`, ``G(θ, coords) = linear_coefficients(θ) @ B``.
    """
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 0:
        raise ValueError(f"num_levels must be a non-negative int (N in Eq. 5), got {num_levels!r}")
    length = _check_length(length)
    coords = _as_coords(coords, None)
    omega = math.pi / length  # ω' = ω/2 = π/L: the mirrored extension has period 2L (Eq. 4).
    n = torch.arange(1, num_levels + 1, device=coords.device, dtype=coords.dtype)
    phase = (n * omega)[:, None] * coords[None, :]  # (N, K)
    return torch.cat([torch.ones_like(coords)[None], torch.sin(phase), torch.cos(phase)], dim=0)


def linear_coefficients(theta: Tensor) -> Tensor:
    """``c(θ) = [A0, A_n cos ψ_n, A_n sin ψ_n]``, shape ``(..., 2N+1)``, the fast form's coefficients.

    From A·sin(x+ψ) = (A cos ψ)·sin x + (A sin ψ)·cos x, so that
    ``G(θ, j) = c(θ) · [1, sin(nω'j), cos(nω'j)]`` exactly.
    """
    n = num_levels_from_theta(theta)
    amp0 = theta[..., :1]
    amp = theta[..., 1 : n + 1]
    psi = theta[..., n + 1 :]
    return torch.cat([amp0, amp * torch.cos(psi), amp * torch.sin(psi)], dim=-1)


def correlation_1d(theta: Tensor, coords: Tensor | Sequence[float], length: float) -> Tensor:
    """G(θ, j) of Eq. 5 at every position of ``coords``: ``(..., 2N+1), (K,) -> (..., K)``.

    Computed with the exact linear form ``c(θ) · B`` (one einsum; no trigonometry per pixel
    and position). ``length`` is the axis length L that sets ω' = π/L.
    """
    n = num_levels_from_theta(theta)
    length = _check_length(length)
    coords = _as_coords(coords, theta)
    basis = fourier_basis(n, coords, length)  # (2N+1, K)
    return torch.matmul(linear_coefficients(theta), basis)


def correlation_1d_polar(theta: Tensor, coords: Tensor | Sequence[float], length: float) -> Tensor:
    """Reference amplitude/phase form of Eq. 5, same signature and result as :func:`correlation_1d`.

    Builds a ``(..., N, K)`` intermediate; use it to check the fast form, not in models.
    """
    n = num_levels_from_theta(theta)
    length = _check_length(length)
    coords = _as_coords(coords, theta)
    omega = math.pi / length
    levels = torch.arange(1, n + 1, device=theta.device, dtype=theta.dtype)
    amp0 = theta[..., :1]  # (..., 1)
    amp = theta[..., 1 : n + 1, None]  # (..., N, 1)
    psi = theta[..., n + 1 :, None]  # (..., N, 1)
    angle = (levels * omega)[:, None] * coords[None, :] + psi  # (..., N, K)
    return amp0 + (amp * torch.sin(angle)).sum(dim=-2)


def correlation_2d(
    theta_hor: Tensor,
    theta_ver: Tensor,
    xs: Tensor | Sequence[float],
    ys: Tensor | Sequence[float],
    width: float,
    height: float,
) -> Tensor:
    """cor_2d(u, v) = G(θ_u^hor, v_x) · G(θ_u^ver, v_y) (Eq. 6) on the grid ``ys × xs``.

    ``theta_hor`` and ``theta_ver`` are ``(..., 2N+1)`` with broadcastable leading shapes;
    the result is ``(..., len(ys), len(xs))``. ω' is π/``width`` along x and π/``height``
    along y.
    """
    num_levels_from_theta(theta_hor)
    num_levels_from_theta(theta_ver)
    try:
        torch.broadcast_shapes(theta_hor.shape[:-1], theta_ver.shape[:-1])
    except RuntimeError:
        raise ValueError(
            "theta_hor and theta_ver must have broadcastable leading shapes, got "
            f"{tuple(theta_hor.shape)} and {tuple(theta_ver.shape)}"
        ) from None
    width = _check_length(width, "width")
    height = _check_length(height, "height")
    xs = _as_coords(xs, theta_hor, "xs")
    ys = _as_coords(ys, theta_ver, "ys")
    g_x = correlation_1d(theta_hor, xs, width)  # (..., Kx)
    g_y = correlation_1d(theta_ver, ys, height)  # (..., Ky)
    # Outer product of the two axial functions (the separable form of Eq. 6).
    return g_y[..., :, None] * g_x[..., None, :]
