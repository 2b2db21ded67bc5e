"""Instance Correlation Module, ICM (paper §3.3, Fig. 5, Eqs. 10–11).

Pixels of one instance have similar correlations with the rest of the image, so the
correlations themselves are instance-discriminative features. For every pixel u the ICM
evaluates cor_2d(u, p) (Eq. 6) against a fixed S_y × S_x grid of reference points p (Eq. 10)
and adds a 1×1-conv projection of these S² numbers to a 1×1-conv projection of the features
(Eq. 11, the S² → C conv of Fig. 5 matches the counts):

    c_u[a·S_x + b] = G(θ_u^hor, px_b) · G(θ_u^ver, py_a)
    f^I_u          = W_f f_u + conv1x1(c)_u

Reference points sit at cell centres of the level's map, p_k = (k + 0.5)·L/S − 0.5 (DESIGN
§3), so they cover the map symmetrically at every pyramid level; on a map smaller than S
they fall slightly outside [0, L), where G is still defined. c is the outer product of two
``(B, H, W, S)`` tensors — no loop over references.

G is the module's ``function`` (a :class:`~cfnet.correlation.CorrelationFunction`; default
``dft``, Eq. 5).

``theta_coords=True`` — our extension, not the paper's (config ``model.instance.position=
icm-coords``). θ comes from a 3×3 conv over the features, and two touching instances of one
class look alike on both sides of their border, so c_u can only encode where u is if the
features already do. With ``theta_coords`` SOLOv2's two CoordConv channels (x then y,
``linspace(-1, 1)`` over the map, :class:`~cfnet.modules.baselines.AddCoords`) are
concatenated to the input of the θ predictor, and only there: W_f, the S²→C conv, the output
width and the signatures of ``correlation_features(x)`` / ``forward(x)`` stay those of the
plain ICM (the θ predictor's 3×3 conv has C+2 input channels instead of C). It is the
controlled test of whether the ICM's trouble is that θ does not see position.

Initialisation (why): W_f starts as the identity (with zero bias), so at initialisation the
module passes the features through plus a small correlation term (the θ predictor starts with
small amplitudes), as a residual block would; the S²→C conv keeps PyTorch's default init.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cfnet._checks import check_int, check_point
from cfnet.config import Config
from cfnet.correlation import CorrelationFunction, _correlation_2d
from cfnet.modules.baselines import AddCoords
from cfnet.modules.theta import ThetaPredictor, correlation_map_from_theta

__all__ = ["InstanceCorrelationModule"]


def _parse_num_refs(num_refs: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(num_refs, int) and not isinstance(num_refs, bool):
        pair = (num_refs, num_refs)
    else:
        try:
            pair = tuple(num_refs)
        except TypeError:
            raise ValueError(f"num_refs must be an int S or a pair (S_y, S_x), got {num_refs!r}") from None
        if len(pair) != 2:
            raise ValueError(f"num_refs must be an int S or a pair (S_y, S_x), got {num_refs!r}")
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"num_refs must hold positive ints, got {num_refs!r}")
    return pair


class InstanceCorrelationModule(nn.Module):
    """ICM: ``forward(x) = W_f x + conv1x1(correlation_features(x))`` (Eqs. 10–11).

    Args:
        channels: C of the input ``(B, C, H, W)``; ``out_channels`` is the same.
        num_levels: N, levels of the correlation function (Eq. 5; default the config's, or the
            ``function`` instance's).
        num_refs: S (an S×S grid of reference points) or a pair ``(S_y, S_x)``; required.
        hidden_channels: width of the θ predictor's 3×3 conv; required.
        function: the correlation function G, a registered name or an instance (default ``dft``).
        theta_coords: our extension (``icm-coords``, see the module docstring): feed the θ
            predictor the features plus two CoordConv channels.

    :meth:`from_config` takes them from a :class:`~cfnet.config.Config`.
    """

    def __init__(
        self,
        channels: int,
        num_levels: int | None = None,
        *,
        num_refs: int | Sequence[int],
        hidden_channels: int,
        function: str | CorrelationFunction | None = None,
        theta_coords: bool = False,
    ) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels")
        self.out_channels = channels
        if not isinstance(theta_coords, bool):
            raise ValueError(f"theta_coords must be True or False, got {theta_coords!r}")
        self.theta_coords = theta_coords
        self.num_refs = _parse_num_refs(num_refs)
        s_y, s_x = self.num_refs
        # AddCoords holds no parameters: the state dict differs from the plain ICM's only in the
        # θ predictor's 3×3 conv weight (C+2 input channels).
        self.theta_input = AddCoords(channels) if theta_coords else None
        theta_channels = channels + 2 if theta_coords else channels
        self.theta = ThetaPredictor(
            theta_channels, num_levels, hidden_channels=hidden_channels, function=function
        )
        self.function = self.theta.function
        self.num_levels = self.function.num_levels
        self.feature_proj = nn.Conv2d(channels, channels, kernel_size=1)  # W_f of Eq. 11
        self.correlation_proj = nn.Conv2d(s_y * s_x, channels, kernel_size=1)  # S² -> C (Fig. 5)
        with torch.no_grad():
            self.feature_proj.weight.copy_(torch.eye(channels)[:, :, None, None])
            self.feature_proj.bias.zero_()

    @classmethod
    def from_config(
        cls, cfg: Config, channels: int, *, theta_coords: bool = False
    ) -> InstanceCorrelationModule:
        """The ICM of ``cfg.model.correlation`` on ``channels`` channels."""
        cor = cfg.model.correlation
        return cls(
            channels,
            cor.num_levels,
            num_refs=cor.num_refs,
            hidden_channels=cor.hidden_channels,
            function=cor.function,
            theta_coords=theta_coords,
        )

    def extra_repr(self) -> str:
        text = (
            f"channels={self.channels}, num_levels={self.num_levels}, num_refs={self.num_refs}, "
            f"function={self.function.name!r}"
        )
        return text + (", theta_coords=True" if self.theta_coords else "")

    def params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """θ^hor, θ^ver for every pixel: each ``(B, H, W, P)``.

        With ``theta_coords`` the θ predictor sees ``x`` plus the CoordConv channels; ``x`` itself
        is the plain ``(B, C, H, W)`` feature either way.
        """
        if self.theta_input is not None:
            if x.dim() != 4 or x.shape[1] != self.channels:
                raise ValueError(f"x must be (B, {self.channels}, H, W) for this ICM, got {tuple(x.shape)}")
            x = self.theta_input(x)
        return self.theta(x)

    def reference_points(
        self,
        height: int,
        width: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Cell-centre reference coordinates ``(ys (S_y,), xs (S_x,))``: p_k = (k + 0.5)·L/S − 0.5."""
        check_int(height, "height")
        check_int(width, "width")
        s_y, s_x = self.num_refs
        dtype = dtype or torch.get_default_dtype()
        ky = torch.arange(s_y, device=device, dtype=dtype)
        kx = torch.arange(s_x, device=device, dtype=dtype)
        return (ky + 0.5) * (height / s_y) - 0.5, (kx + 0.5) * (width / s_x) - 0.5

    def correlation_features(self, x: Tensor) -> Tensor:
        """c of Eq. 10 for every pixel: ``(B, S_y·S_x, H, W)``.

        Channel ``a·S_x + b`` holds cor_2d(u, (py_a, px_b)) = G(θ_u^hor, px_b)·G(θ_u^ver, py_a).
        """
        theta_hor, theta_ver = self.params(x)
        return self._features_from_theta(theta_hor, theta_ver)

    def _features_from_theta(self, theta_hor: Tensor, theta_ver: Tensor) -> Tensor:
        batch, height, width, _ = theta_hor.shape
        ys, xs = self.reference_points(height, width, device=theta_hor.device, dtype=theta_hor.dtype)
        # (B, H, W, S_y, S_x)
        cor = _correlation_2d(theta_hor, theta_ver, xs, ys, width, height, self.function)
        return cor.reshape(batch, height, width, -1).permute(0, 3, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.feature_proj(x) + self.correlation_proj(self.correlation_features(x))

    def correlation_map(self, x: Tensor, point: Sequence[int]) -> Tensor:
        """cor_2d(u, v) (Eq. 6) between ``u = point = (row, col)`` and every v: ``(B, H, W)``."""
        check_point(point, x.shape[-2], x.shape[-1])  # before spending anything on θ
        theta_hor, theta_ver = self.params(x)
        return correlation_map_from_theta(theta_hor, theta_ver, point, self.function)
