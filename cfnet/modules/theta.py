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
``hidden_channels≈100`` matches the paper; the config's default 64 (0.43 M) is cheaper. A full-width
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

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cfnet._checks import check_int, check_point
from cfnet.correlation import (
    CorrelationFunction,
    _correlation_2d,
    num_levels_from_theta,
    pixel_coords,
    resolve_correlation_function,
)

__all__ = ["ThetaPredictor", "check_point", "correlation_map_from_theta"]

_INIT_WEIGHT_STD = 0.01


class ThetaPredictor(nn.Module):
    """3×3 conv (C→hidden) + ReLU, then two 1×1 convs (hidden→P) for θ^hor and θ^ver.

    ``forward(x)`` with ``x`` of shape ``(B, C, H, W)`` returns ``(theta_hor, theta_ver)``,
    each ``(B, H, W, P)`` (channels last, the layout :mod:`cfnet.correlation` expects), with
    P = ``function.num_params`` (2N+1 for the shipped families).
    ``hidden_channels`` (required; the config's ``model.correlation.hidden_channels``)
    ≈100 meets the paper's +0.60 M budget for SCM + ICM at C = 256 (see the module docstring
    for the arithmetic).

    ``function`` is a registered name or a :class:`~cfnet.correlation.CorrelationFunction`
    (default ``dft``); ``num_levels`` (N, default the config's) sizes a named one and must agree
    with an instance.
    """

    def __init__(
        self,
        channels: int,
        num_levels: int | None = None,
        *,
        hidden_channels: int,
        function: str | CorrelationFunction | None = None,
    ) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels")
        if num_levels is not None:
            check_int(num_levels, "num_levels")
        self.function = resolve_correlation_function(function, num_levels)
        self.num_levels = check_int(self.function.num_levels, "num_levels")
        self.hidden_channels = check_int(hidden_channels, "hidden_channels")
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


def correlation_map_from_theta(
    theta_hor: Tensor,
    theta_ver: Tensor,
    point: Sequence[int],
    function: CorrelationFunction | None = None,
) -> Tensor:
    """cor_2d(u, v) (Eq. 6) between ``u = point`` and every v: θ's ``(B, H, W, P)`` -> ``(B, H, W)``.

    ``function`` is G (default ``dft`` with N read from θ). The callers (the modules'
    ``correlation_map``) have checked ``point``; θ comes from their predictor.
    """
    _, height, width, _ = theta_hor.shape
    row, col = check_point(point, height, width)
    if function is None:
        function = resolve_correlation_function(None, num_levels_from_theta(theta_hor))
    xs = pixel_coords(width, device=theta_hor.device, dtype=theta_hor.dtype)
    ys = pixel_coords(height, device=theta_hor.device, dtype=theta_hor.dtype)
    return _correlation_2d(theta_hor[:, row, col], theta_ver[:, row, col], xs, ys, width, height, function)
