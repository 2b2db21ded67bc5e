"""The θ predictor shared by SCM and ICM (paper Fig. 4–5), and helpers both modules use.

A 3×3 convolution with ReLU, then two 1×1 convolutions predict, for every pixel u, the
parameters θ_u^hor and θ_u^ver of its two axial correlation functions (Eq. 5–6). How many
numbers θ holds (P, 2N+1 for the shipped families) and how they start is the business of the
:class:`~cfnet.correlation.CorrelationFunction` the predictor serves (``function``, default
``dft``: ``[A0, A_1..A_N, ψ_1..ψ_N]``).

Width. The paper's Table 8 budget is +0.60 M parameters for SCM + ICM together. With C input
channels, hidden width h and N levels, one predictor has ``9·C·h + h + 2·(h·(2N+1) + 2N+1)``
parameters and the ICM adds two 1×1 convs (W_f: C·C + C; S²→C: S²·C + C). At C = 256, N = 5,
S = 16 that is ``2·(2327·h + 22) + 131 584``: h = 100 gives 0.597 M (h = 101: 0.602 M), so
``hidden_channels≈100`` matches the paper; the default 64 (0.43 M) is cheaper. A full-width
256→256 3×3 predictor would be 0.59 M on its own, per module.

Initialisation (why). θ depends on the features only through the 1×1 convs, so their weights
start small but random (std 0.01), not zero: zero weights would block the gradient to the
3×3 conv. Their biases come from ``function.init_bias()``; for ``dft`` amplitude biases start
at 0.1/n, not 0: ∂G/∂ψ_n = A_n·cos(·) vanishes with A_n, so
amplitudes scattered around 0 would leave the phases with tiny, sign-flipping gradients; the
1/n decay makes the initial curves smooth. A0 and phase biases start at 0. The
initial correlations are thus small (|G| ≲ 0.25, a near-uniform softmax in the SCM, a small
additive term in the ICM) but not constant over the map, and every parameter gets gradient.
Other families give the same guarantees in their own ``init_bias`` (see
:class:`~cfnet.correlation.GaussianCorrelation`).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cfnet.correlation import (
    CorrelationFunction,
    correlation_2d,
    pixel_coords,
    resolve_correlation_function,
)

__all__ = ["ThetaPredictor", "check_point", "correlation_map_from_theta"]

_INIT_WEIGHT_STD = 0.01


def _check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class ThetaPredictor(nn.Module):
    """3×3 conv (C→hidden) + ReLU, then two 1×1 convs (hidden→P) for θ^hor and θ^ver.

    ``forward(x)`` with ``x`` of shape ``(B, C, H, W)`` returns ``(theta_hor, theta_ver)``,
    each ``(B, H, W, P)`` (channels last, the layout :mod:`cfnet.correlation` expects), with
    P = ``function.num_params`` (2N+1 for the shipped families).
    ``hidden_channels≈100`` meets the paper's +0.60 M budget for SCM + ICM at C = 256 (see
    the module docstring for the arithmetic); the default is 64.

    ``function`` is a registered name or a :class:`~cfnet.correlation.CorrelationFunction`
    (default ``dft``); ``num_levels`` (N, default 5) sizes a named one and must agree with an
    instance.
    """

    def __init__(
        self,
        channels: int,
        num_levels: int | None = None,
        hidden_channels: int = 64,
        function: str | CorrelationFunction | None = None,
    ) -> None:
        super().__init__()
        self.channels = _check_positive_int(channels, "channels")
        if num_levels is not None:
            _check_positive_int(num_levels, "num_levels")
        self.function = resolve_correlation_function(function, num_levels)
        self.num_levels = _check_positive_int(self.function.num_levels, "num_levels")
        self.hidden_channels = _check_positive_int(hidden_channels, "hidden_channels")
        n_theta = self.function.num_params
        self.conv = nn.Conv2d(channels, hidden_channels, kernel_size=3, padding=1)
        self.hor = nn.Conv2d(hidden_channels, n_theta, kernel_size=1)
        self.ver = nn.Conv2d(hidden_channels, n_theta, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")
        nn.init.zeros_(self.conv.bias)
        bias = self.function.init_bias()
        for head in (self.hor, self.ver):
            nn.init.normal_(head.weight, std=_INIT_WEIGHT_STD)
            with torch.no_grad():
                head.bias.copy_(bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"x must be (B, {self.channels}, H, W) for this θ predictor, got {tuple(x.shape)}"
            )
        h = torch.relu(self.conv(x))
        return self.hor(h).permute(0, 2, 3, 1), self.ver(h).permute(0, 2, 3, 1)


def check_point(point: Sequence[int], height: int, width: int) -> tuple[int, int]:
    """Validate a pixel ``point = (row, col)`` inside an ``height × width`` map."""
    try:
        row, col = point
    except (TypeError, ValueError):
        raise ValueError(f"point must be a pair (row, col), got {point!r}") from None
    checked = []
    for name, v in (("row", row), ("col", col)):
        if isinstance(v, Tensor) and v.numel() == 1 and not v.is_floating_point():
            v = v.item()
        try:  # ints, numpy integers, 0-d integer tensors; not floats or bools
            if isinstance(v, bool):
                raise TypeError
            checked.append(operator.index(v))
        except TypeError:
            raise ValueError(f"point {name} must be an int, got {v!r}") from None
    row, col = checked
    for name, v, size in (("row", row, height), ("col", col, width)):
        if not 0 <= v < size:
            raise ValueError(
                f"point {(row, col)} lies outside the {height}x{width} feature map "
                f"({name} {v} not in [0, {size}))"
            )
    return row, col


def correlation_map_from_theta(
    theta_hor: Tensor,
    theta_ver: Tensor,
    point: Sequence[int],
    function: CorrelationFunction | None = None,
) -> Tensor:
    """cor_2d(u, v) (Eq. 6) between ``u = point`` and every v: θ's ``(B, H, W, P)`` -> ``(B, H, W)``.

    ``function`` is G (default ``dft`` with N read from θ).
    """
    _, height, width, _ = theta_hor.shape
    row, col = check_point(point, height, width)
    xs = pixel_coords(width, device=theta_hor.device, dtype=theta_hor.dtype)
    ys = pixel_coords(height, device=theta_hor.device, dtype=theta_hor.dtype)
    return correlation_2d(
        theta_hor[:, row, col], theta_ver[:, row, col], xs, ys, width, height, function=function
    )
