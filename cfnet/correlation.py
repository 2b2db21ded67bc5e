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

Pluggable correlation functions. The modules never name Eq. 5 directly: they hold a
:class:`CorrelationFunction`, which owns its θ layout (``num_params``, ``param_names``), the
initial bias of the θ predictor (``init_bias``), its evaluation ``G(θ, coords, length)`` and a
description of θ for display (``describe``). Families register themselves by name
(:func:`register_correlation_function`) and the config picks one with
``model.correlation.function`` (:func:`build_correlation_function`). Shipped:

- ``dft`` (default): the paper's mirrored Eq. 5 above, ω' = π/L — numerically the very same
  computation as :func:`correlation_1d`;
- ``dft-periodic``: Eq. 3 without the mirror, ω = 2π/L, same θ layout — the ablation of Eq. 4;
- ``gaussian``: a non-Fourier family with the same 2N+1 numbers (see :class:`GaussianCorrelation`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch
from torch import Tensor

from cfnet._checks import check_int, check_length
from cfnet.config import CorrelationConfig

__all__ = [
    "num_levels_from_theta",
    "pixel_coords",
    "fourier_basis",
    "linear_coefficients",
    "correlation_1d",
    "correlation_1d_polar",
    "correlation_2d",
    "ParameterGroup",
    "CorrelationFunction",
    "LinearCorrelationFunction",
    "DFTCorrelation",
    "PeriodicDFTCorrelation",
    "GaussianCorrelation",
    "CORRELATION_FUNCTIONS",
    "DEFAULT_CORRELATION_FUNCTION",
    "register_correlation_function",
    "build_correlation_function",
    "resolve_correlation_function",
]

DEFAULT_CORRELATION_FUNCTION = CorrelationConfig.function  # "dft"; config.py holds the defaults
DEFAULT_NUM_LEVELS = CorrelationConfig.num_levels  # N = 5


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
    check_int(length, "length")
    return torch.arange(length, device=device, dtype=dtype or torch.get_default_dtype())


def _check_num_levels(num_levels: int, minimum: int = 0) -> int:
    return check_int(num_levels, "num_levels", minimum, " (N in Eq. 5)")


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


def _sinusoid_basis(num_levels: int, coords: Tensor, omega: float) -> Tensor:
    """Rows ``1, sin(n·ω·j) (n=1..N), cos(n·ω·j) (n=1..N)``: shape ``(2N+1, K)``."""
    n = torch.arange(1, num_levels + 1, device=coords.device, dtype=coords.dtype)
    phase = (n * omega)[:, None] * coords[None, :]  # (N, K)
    return torch.cat([torch.ones_like(coords)[None], torch.sin(phase), torch.cos(phase)], dim=0)


def fourier_basis(num_levels: int, coords: Tensor | Sequence[float], length: float) -> Tensor:
    """The fixed basis ``B`` of the fast form: shape ``(2N+1, K)``.

    Rows: ``1``, then ``sin(n·ω'·j)`` for n = 1..N, then ``cos(n·ω'·j)`` for n = 1..N, with
    ω' = π/``length`` (Eq. 4–5) and ``j`` = ``coords``. Paired with
    :func:`linear_coefficients`, ``G(θ, coords) = linear_coefficients(θ) @ B``.
    """
    _check_num_levels(num_levels)
    length = check_length(length)
    coords = _as_coords(coords, None)
    return _sinusoid_basis(num_levels, coords, _mirrored_omega(length))


def _mirrored_omega(length: float) -> float:
    return math.pi / length  # ω' = ω/2 = π/L: the mirrored extension has period 2L (Eq. 4).


def linear_coefficients(theta: Tensor) -> Tensor:
    """``c(θ) = [A0, A_n cos ψ_n, A_n sin ψ_n]``, shape ``(..., 2N+1)``, the fast form's coefficients.

    From A·sin(x+ψ) = (A cos ψ)·sin x + (A sin ψ)·cos x, so that
    ``G(θ, j) = c(θ) · [1, sin(nω'j), cos(nω'j)]`` exactly.
    """
    return _linear_coefficients(theta, num_levels_from_theta(theta))


def _linear_coefficients(theta: Tensor, n: int) -> Tensor:
    amp, psi = theta[..., 1 : n + 1], theta[..., n + 1 :]
    return torch.cat([theta[..., :1], amp * torch.cos(psi), amp * torch.sin(psi)], dim=-1)


def correlation_1d(theta: Tensor, coords: Tensor | Sequence[float], length: float) -> Tensor:
    """G(θ, j) of Eq. 5 at every position of ``coords``: ``(..., 2N+1), (K,) -> (..., K)``.

    The ``dft`` correlation function with N read from θ's last dimension: computed with the
    exact linear form ``c(θ) · B`` (one matmul; no trigonometry per pixel and position).
    ``length`` is the axis length L that sets ω' = π/L.
    """
    return DFTCorrelation(num_levels_from_theta(theta))(theta, coords, length)


def correlation_1d_polar(theta: Tensor, coords: Tensor | Sequence[float], length: float) -> Tensor:
    """Reference amplitude/phase form of Eq. 5, same signature and result as :func:`correlation_1d`.

    Builds a ``(..., N, K)`` intermediate; use it to check the fast form, not in models.
    """
    n = num_levels_from_theta(theta)
    length = check_length(length)
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
    function: CorrelationFunction | None = None,
) -> Tensor:
    """cor_2d(u, v) = G(θ_u^hor, v_x) · G(θ_u^ver, v_y) (Eq. 6) on the grid ``ys × xs``.

    ``theta_hor`` and ``theta_ver`` are ``(..., P)`` with broadcastable leading shapes; the
    result is ``(..., len(ys), len(xs))``. ``function`` is the correlation function G of both
    axes (any registered family: the 2-D form is the same product for all of them); ``None``
    means ``dft`` (Eq. 5) with N read from each θ's last dimension (2N+1). ``width`` is the
    length L of the x axis, ``height`` that of the y axis (ω' = π/width along x and π/height
    along y for ``dft``).
    """
    g_hor, g_ver = _axis_functions(theta_hor, theta_ver, function)
    width, height = check_length(width, "width"), check_length(height, "height")
    xs, ys = _as_coords(xs, theta_hor, "xs"), _as_coords(ys, theta_ver, "ys")
    return _correlation_2d(theta_hor, theta_ver, xs, ys, width, height, g_hor, g_ver)


def _axis_functions(theta_hor: Tensor, theta_ver: Tensor, function: CorrelationFunction | None):
    """G of each axis for :func:`correlation_2d`, with θ checked against it."""
    if function is None:  # dft, N read from each θ
        g_hor = DFTCorrelation(num_levels_from_theta(theta_hor))
        g_ver = DFTCorrelation(num_levels_from_theta(theta_ver))
    elif not isinstance(function, CorrelationFunction):
        raise TypeError(f"function must be a CorrelationFunction, got {type(function).__name__}")
    else:
        g_hor = g_ver = function
    g_hor.check_theta(theta_hor, "theta_hor")
    g_ver.check_theta(theta_ver, "theta_ver")
    try:
        torch.broadcast_shapes(theta_hor.shape[:-1], theta_ver.shape[:-1])
    except RuntimeError:
        raise ValueError(
            "theta_hor and theta_ver must have broadcastable leading shapes, got "
            f"{tuple(theta_hor.shape)} and {tuple(theta_ver.shape)}"
        ) from None
    return g_hor, g_ver


def _correlation_2d(theta_hor, theta_ver, xs, ys, width, height, g_hor, g_ver=None) -> Tensor:
    """Eq. 6 on validated inputs (the kernel the modules call): the outer product of the axial G's."""
    g_x = g_hor.evaluate(theta_hor, xs, width)  # (..., Kx)
    g_y = (g_ver or g_hor).evaluate(theta_ver, ys, height)  # (..., Ky)
    return g_y[..., :, None] * g_x[..., None, :]


# ----------------------------------------------------------------------------------------------
# the pluggable interface


@dataclass(frozen=True)
class ParameterGroup:
    """Some numbers derived from θ, shown together (one bar chart in the demo).

    ``key`` is an identifier (``"amplitudes"``), ``title`` the chart's title, ``labels`` one
    short name per value, ``values`` a ``(..., len(labels))`` tensor and ``unit`` the axis title.
    """

    key: str
    title: str
    labels: tuple[str, ...]
    values: Tensor
    unit: str = ""


class CorrelationFunction(ABC):
    """A family G(θ, j) of 1-D correlation functions (the role of Eq. 5 in §3.2).

    An instance fixes the family and its size (``num_levels``, N). It owns everything that
    depends on how θ is laid out, so that the θ predictor, SCM, ICM, inspection and drawing
    code never do:

    - ``num_params`` (P): numbers per pixel and axis (2N+1 for the shipped families);
    - ``param_names``: one display name per number, in θ's order;
    - ``init_bias()``: the initial bias of the θ predictor's two 1×1 convs, shape ``(P,)``;
    - ``function(theta (..., P), coords (K,), length) -> (..., K)``: G at real coordinates
      ``j`` on an axis of length L (validated; the work is done by :meth:`evaluate`);
    - ``describe(theta)``: θ as :class:`ParameterGroup` s for display.

    Subclasses set ``label`` (a one-line formula for titles) and are registered with
    :func:`register_correlation_function`, which sets ``name``. Instances are stateless,
    compare equal by family and N, and can be pickled.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = "G(θ, j)"

    def __init__(self, num_levels: int = DEFAULT_NUM_LEVELS) -> None:
        self.num_levels = _check_num_levels(num_levels)

    # ---------------------------------------------------------------- layout
    @property
    def num_params(self) -> int:
        """P, the numbers θ holds per pixel and axis (2N+1 unless a family says otherwise)."""
        return 2 * self.num_levels + 1

    @property
    @abstractmethod
    def param_names(self) -> list[str]:
        """One display name per entry of θ, in order (``len == num_params``)."""

    @abstractmethod
    def init_bias(self) -> Tensor:
        """Initial bias of the θ predictor's 1×1 convs: a float64 ``(num_params,)`` tensor."""

    # ---------------------------------------------------------------- evaluation
    @abstractmethod
    def evaluate(self, theta: Tensor, coords: Tensor, length: float) -> Tensor:
        """G on validated inputs: ``theta (..., P)`` float, ``coords (K,)`` of θ's dtype/device,
        ``length`` a positive float. Returns ``(..., K)``."""

    def __call__(self, theta: Tensor, coords: Tensor | Sequence[float], length: float) -> Tensor:
        """G(θ, j) at every position of ``coords``: ``(..., P), (K,) -> (..., K)``."""
        self.check_theta(theta)
        length = check_length(length)
        coords = _as_coords(coords, theta)
        return self.evaluate(theta, coords, length)

    def check_theta(self, theta: Tensor, name: str = "theta") -> None:
        """Raise unless ``theta`` is a tensor whose last dimension is ``num_params``."""
        if not isinstance(theta, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(theta).__name__}")
        if theta.dim() == 0 or theta.shape[-1] != self.num_params:
            shape = tuple(theta.shape)
            raise ValueError(
                f"{name} must have a last dimension of {self.num_params} for {self!r} "
                f"([{', '.join(self.param_names)}]), got shape {shape}"
            )

    # ---------------------------------------------------------------- display
    def describe(self, theta: Tensor) -> list[ParameterGroup]:
        """θ ``(..., P)`` as groups of numbers to show; by default one group of raw parameters."""
        self.check_theta(theta)
        return [ParameterGroup("parameters", "parameters θ", tuple(self.param_names), theta, "value")]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, num_levels={self.num_levels})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.num_levels == self.num_levels  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.num_levels))


class LinearCorrelationFunction(CorrelationFunction):
    """A family that is linear in some coefficients: ``G(θ, ·) = coefficients(θ) @ basis(coords, L)``.

    ``basis`` depends only on the coordinates, so evaluating G for every pixel of a map at K
    positions is one ``(…, P') × (P', K)`` matmul: the fast path the modules rely on.
    """

    @abstractmethod
    def coefficients(self, theta: Tensor) -> Tensor:
        """``(..., P)`` θ → ``(..., P')`` coefficients of the basis."""

    @abstractmethod
    def basis(self, coords: Tensor, length: float) -> Tensor:
        """``(P', K)`` basis functions at ``coords`` on an axis of length ``length``."""

    def evaluate(self, theta: Tensor, coords: Tensor, length: float) -> Tensor:
        return torch.matmul(self.coefficients(theta), self.basis(coords, length))


_F = TypeVar("_F", bound=type[CorrelationFunction])

CORRELATION_FUNCTIONS: dict[str, type[CorrelationFunction]] = {}
"""Registered families by name (``model.correlation.function``); fill it with the decorator."""


def register_correlation_function(name: str) -> Callable[[_F], _F]:
    """Class decorator: register a :class:`CorrelationFunction` subclass under ``name``.

    The name becomes a valid ``model.correlation.function`` value. Registering a second class
    under a taken name is an error (remove the first from :data:`CORRELATION_FUNCTIONS` to
    replace it).
    """
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(
            f"a correlation function name must be a non-empty string without spaces around it, got {name!r}"
        )

    def decorate(cls: _F) -> _F:
        if not (isinstance(cls, type) and issubclass(cls, CorrelationFunction)):
            raise TypeError(f"only CorrelationFunction subclasses can be registered, got {cls!r}")
        if name in CORRELATION_FUNCTIONS and CORRELATION_FUNCTIONS[name] is not cls:
            raise ValueError(
                f"correlation function {name!r} is already registered "
                f"({CORRELATION_FUNCTIONS[name].__qualname__})"
            )
        cls.name = name
        CORRELATION_FUNCTIONS[name] = cls
        return cls

    return decorate


def build_correlation_function(name: str, num_levels: int = DEFAULT_NUM_LEVELS) -> CorrelationFunction:
    """The registered family ``name`` with N = ``num_levels`` (``model.correlation.function``)."""
    cls = CORRELATION_FUNCTIONS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(
            f"unknown correlation function {name!r}; valid choices: {', '.join(CORRELATION_FUNCTIONS)}"
        )
    return cls(num_levels)


def resolve_correlation_function(
    function: str | CorrelationFunction | None, num_levels: int | None = None
) -> CorrelationFunction:
    """The modules' ``function`` argument as an instance.

    ``None`` means ``dft``; a name is built with ``num_levels`` (default: the config's N); an instance is
    used as is, and ``num_levels``, if given, must agree with it.
    """
    if isinstance(function, CorrelationFunction):
        if num_levels is not None and num_levels != function.num_levels:
            raise ValueError(
                f"num_levels={num_levels!r} disagrees with the correlation function {function!r}"
            )
        return function
    if function is None:
        function = DEFAULT_CORRELATION_FUNCTION
    return build_correlation_function(function, DEFAULT_NUM_LEVELS if num_levels is None else num_levels)


# ----------------------------------------------------------------------------------------------
# the shipped families


# Initial amplitude of level n is _INIT_AMPLITUDE / n: small, smooth initial curves (see
# cfnet.modules.theta for why amplitudes must not start at 0).
_INIT_AMPLITUDE = 0.1


def _decaying_amplitudes_bias(num_levels: int) -> Tensor:
    """``[0, 0.1/1, …, 0.1/N, 0 × N]`` (float64): A0 = 0, A_n = 0.1/n, the last N numbers 0."""
    bias = torch.zeros(2 * num_levels + 1, dtype=torch.float64)
    bias[1 : num_levels + 1] = _INIT_AMPLITUDE / torch.arange(1, num_levels + 1, dtype=torch.float64)
    return bias


class _FourierLayout(LinearCorrelationFunction):
    """θ = [A0, A_1..A_N, ψ_1..ψ_N] (Eq. 5) and its exact linear form; the frequency is the subclass'."""

    @property
    def param_names(self) -> list[str]:
        n = self.num_levels
        return ["A0", *(f"A{i}" for i in range(1, n + 1)), *(f"psi{i}" for i in range(1, n + 1))]

    def init_bias(self) -> Tensor:
        # A0 = 0, A_n = 0.1/n, ψ_n = 0: ∂G/∂ψ_n = A_n cos(·) would vanish with A_n = 0.
        return _decaying_amplitudes_bias(self.num_levels)

    def coefficients(self, theta: Tensor) -> Tensor:
        return _linear_coefficients(theta, self.num_levels)

    @abstractmethod
    def omega(self, length: float) -> float:
        """The fundamental frequency on an axis of length ``length``."""

    def basis(self, coords: Tensor, length: float) -> Tensor:
        return _sinusoid_basis(self.num_levels, coords, self.omega(length))

    def describe(self, theta: Tensor) -> list[ParameterGroup]:
        self.check_theta(theta)
        n = self.num_levels
        names = [f"A{i}" for i in range(n + 1)]
        return [
            ParameterGroup(
                "amplitudes",
                "amplitudes A<sub>0</sub>..A<sub>N</sub>",
                tuple(names),
                theta[..., : n + 1],
                "amplitude",
            ),
            ParameterGroup(
                "phases",
                "phases ψ<sub>1</sub>..ψ<sub>N</sub> (rad)",
                tuple(f"ψ{i}" for i in range(1, n + 1)),
                theta[..., n + 1 :],
                "radians",
            ),
        ]


@register_correlation_function("dft")
class DFTCorrelation(_FourierLayout):
    """The paper's correlation function, Eq. 5 on the mirrored extension of Eq. 4 (the default).

    G(θ, j) = A0 + Σ_n A_n sin(n ω' j + ψ_n), ω' = π/L. Evaluated as
    ``linear_coefficients(θ) @ fourier_basis(N, j, L)`` — exactly what :func:`correlation_1d`
    computes, so models built before the function became pluggable give the same numbers.
    """

    label = "G(θ, j) = A₀ + Σₙ Aₙ sin(nπj/L + ψₙ)  (Eq. 5, mirrored)"

    def omega(self, length: float) -> float:
        return _mirrored_omega(length)

    # evaluate: LinearCorrelationFunction's coefficients(θ) @ basis(j, L), the computation of
    # correlation_1d (fourier_basis and linear_coefficients without their argument checks).


@register_correlation_function("dft-periodic")
class PeriodicDFTCorrelation(_FourierLayout):
    """Eq. 3's periodic extension without the mirror of Eq. 4: ω = 2π/L (an ablation).

    G(θ, j) = A0 + Σ_n A_n sin(n ω j + ψ_n), ω = 2π/L, same θ layout and init as ``dft``.
    G(θ, 0) = G(θ, L): the curve must return to its start at the far border, the
    "broken continuity" §3.2 avoids with the mirror.
    """

    label = "G(θ, j) = A₀ + Σₙ Aₙ sin(2nπj/L + ψₙ)  (Eq. 3, periodic)"

    def omega(self, length: float) -> float:
        return 2.0 * math.pi / length  # ω = 2π/L: period L (Eq. 3).


# Widths: σ_n = exp(s_n)/N with s_n clamped to ±_GAUSS_LOG_WIDTH_LIMIT, so that no real s_n can
# overflow to inf/NaN (σ from 4.5e-5/N to 2.2e4/N, far beyond any useful width).
_GAUSS_LOG_WIDTH_LIMIT = 10.0


@register_correlation_function("gaussian")
class GaussianCorrelation(CorrelationFunction):
    """A non-Fourier family with the same 2N+1 numbers: a constant plus N Gaussian bumps.

    G(θ, j) = A0 + Σ_{n=1..N} A_n · exp(−(j/L − μ_n)² / (2 σ_n²)),
    θ = [A0, A_1..A_N, s_1..s_N],  μ_n = (n − 0.5)/N (fixed),  σ_n = exp(s_n)/N.

    The bumps sit at fixed, evenly spaced centres over the normalised coordinate j/L (so, as for
    ``dft``, one θ draws the same curve at any resolution); θ sets their heights A_n and widths.
    σ_n = exp(s_n)/N makes every real s_n a valid width, with s_n = 0 meaning "one centre
    spacing"; s_n is clamped to [−10, 10] only to keep extreme values finite. The widths make G
    non-linear in θ, so there is no fixed basis: evaluation builds a ``(..., N, K)`` intermediate.

    Initialisation (why), analogous to ``dft``: A0 = 0, A_n = 0.1/n, s_n = 0. Equal amplitudes
    with σ = one spacing would sum to an almost flat curve; the 1/n decay gives a smooth,
    small (|G| ≲ 0.25), non-constant one. ∂G/∂A_n is the bump itself (> 0 everywhere) and
    ∂G/∂s_n = A_n · bump · z² with z = (j/L − μ_n)/σ_n, non-zero because A_n ≠ 0 — so every
    parameter gets gradient from the start.
    """

    label = "G(θ, j) = A₀ + Σₙ Aₙ exp(−(j/L − μₙ)²/2σₙ²),  μₙ = (n−½)/N,  σₙ = eˢⁿ/N"

    def __init__(self, num_levels: int = DEFAULT_NUM_LEVELS) -> None:
        super().__init__(_check_num_levels(num_levels, minimum=1))

    @property
    def param_names(self) -> list[str]:
        n = self.num_levels
        return ["A0", *(f"A{i}" for i in range(1, n + 1)), *(f"s{i}" for i in range(1, n + 1))]

    def init_bias(self) -> Tensor:
        return _decaying_amplitudes_bias(self.num_levels)

    def centres(self, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """μ_n = (n − 0.5)/N over the normalised coordinate j/L: shape ``(N,)``."""
        n = torch.arange(1, self.num_levels + 1, device=device, dtype=dtype or torch.get_default_dtype())
        return (n - 0.5) / self.num_levels

    def widths(self, theta: Tensor) -> Tensor:
        """σ_n = exp(clamp(s_n, ±10))/N (fractions of L): ``(..., N)``."""
        log_width = theta[..., self.num_levels + 1 :].clamp(-_GAUSS_LOG_WIDTH_LIMIT, _GAUSS_LOG_WIDTH_LIMIT)
        return torch.exp(log_width) / self.num_levels

    def evaluate(self, theta: Tensor, coords: Tensor, length: float) -> Tensor:
        n = self.num_levels
        u = coords / length  # normalised coordinate j/L, (K,)
        mu = self.centres(theta.device, theta.dtype)  # (N,)
        z = (u[None, :] - mu[:, None]) / self.widths(theta)[..., :, None]  # (..., N, K)
        bumps = torch.exp(-0.5 * z * z)
        return theta[..., :1] + (theta[..., 1 : n + 1, None] * bumps).sum(dim=-2)

    def describe(self, theta: Tensor) -> list[ParameterGroup]:
        self.check_theta(theta)
        n = self.num_levels
        return [
            ParameterGroup(
                "amplitudes",
                "amplitudes A<sub>0</sub>..A<sub>N</sub>",
                tuple(f"A{i}" for i in range(n + 1)),
                theta[..., : n + 1],
                "amplitude",
            ),
            ParameterGroup(
                "widths",
                "widths σ<sub>1</sub>..σ<sub>N</sub> (fraction of L)",
                tuple(f"σ{i}" for i in range(1, n + 1)),
                self.widths(theta),
                "σ / L",
            ),
        ]
