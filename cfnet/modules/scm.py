"""Semantic Correlation Module, SCM (paper §3.3, Fig. 4, Eqs. 8–9).

The attention weight f_u^T M f_v of Eq. 7 is replaced by the learned correlation
cor_2d(u, v) = G(θ_u^hor, v_x)·G(θ_u^ver, v_y) (Eq. 6), with θ predicted per pixel by a
:class:`~cfnet.modules.theta.ThetaPredictor`. The output is ``x + f^S`` (the ⊕ of Fig. 4).
G is the module's ``function`` (a :class:`~cfnet.correlation.CorrelationFunction`; default
``dft``, Eq. 5); both modes use nothing else of it than its evaluation.

Modes:

- ``axial`` (default, Eq. 9, axes as DESIGN §2 fixes them). Along the row of u only v_x
  varies and along its column only v_y varies, so

      f^S_u = Σ_{v ∈ row(u)} softmax_v(G(θ_u^hor, v_x)) f_v + Σ_{v ∈ col(u)} softmax_v(G(θ_u^ver, v_y)) f_v.

  (The paper's Eq. 9 pairs the column {p_x = u_x} with cor_hor and the row with cor_ver; on
  a column cor_hor(u, v) = G(θ_u^hor, u_x)·… has a constant first factor, so as printed the
  axial functions would not vary along the axis they weight.) Both sums include v = u. It is
  two batched matmuls with row weights ``(B, H, W, W)`` and column weights ``(B, H, W, H)``:
  memory O(B·C·HW + B·HW·(H+W)); no (HW)×(HW) tensor is ever built.
- ``global`` (Eq. 8): softmax over all HW locations of cor_2d(u, v), then aggregation. O((HW)²)
  in time. Small maps build the whole ``(B, HW, HW)`` weights (the dense path); maps whose
  weights exceed :data:`~cfnet.modules.chunked.MAX_CHUNK_BYTES` (or ``max_global_positions``
  positions) are aggregated a block of query pixels at a time, recomputing each block's
  weights in backward (:mod:`cfnet.modules.chunked`), so memory stays O(B·C·HW) plus a few
  blocks — P2 of an 800×1333 image (200×336) runs in ~0.6 GiB where the dense path would
  need ~72 GB (four 18 GB (HW)² tensors in forward + backward). Both paths give the same
  numbers up to float rounding.

No temperature or scaling is applied to the correlations before the softmax: the θ amplitudes
are free to learn the sharpness.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cfnet._checks import check_int, check_point
from cfnet.config import Config, SemanticConfig
from cfnet.correlation import CorrelationFunction, _correlation_2d, pixel_coords
from cfnet.modules.chunked import (
    MAX_CHUNK_BYTES,
    check_global_size,
    chunked_softmax_aggregate,
    query_chunk_size,
    use_dense,
)
from cfnet.modules.theta import ThetaPredictor, correlation_map_from_theta

__all__ = ["SemanticCorrelationModule", "SCM_MODES"]

SCM_MODES = ("axial", "global")


class SemanticCorrelationModule(nn.Module):
    """SCM: ``forward(x) = x + f^S`` with f^S from Eq. 9 (``mode="axial"``) or Eq. 8 (``"global"``).

    Args:
        channels: C of the input ``(B, C, H, W)``; ``out_channels`` is the same.
        num_levels: N, levels of the correlation function (Eq. 5; default the config's, or the
            ``function`` instance's).
        mode: ``"axial"`` or ``"global"`` (default the config's ``model.semantic.scm_mode``).
        hidden_channels: width of the θ predictor's 3×3 conv (see :mod:`cfnet.modules.theta`);
            required.
        max_global_positions: largest H·W that global mode may aggregate with the dense path,
            all (HW)² weights at once (default the config's); larger maps, and maps whose weights
            exceed ``max_chunk_bytes``, go a block of query pixels at a time. Before query blocks
            existed this was the largest map global mode accepted at all.
        function: the correlation function G, a registered name or an instance (default ``dft``).
        max_chunk_bytes: bytes of one block of global-mode softmax weights (default
            :data:`~cfnet.modules.chunked.MAX_CHUNK_BYTES`, not a config field); ``None`` builds
            all (HW)² weights at once and refuses maps above ``max_global_positions``, as before
            query blocks (for comparisons).

    :meth:`from_config` takes all of them from a :class:`~cfnet.config.Config`.
    """

    def __init__(
        self,
        channels: int,
        num_levels: int | None = None,
        mode: str = SemanticConfig.scm_mode,
        *,
        hidden_channels: int,
        max_global_positions: int = SemanticConfig.max_global_positions,
        function: str | CorrelationFunction | None = None,
        max_chunk_bytes: int | None = MAX_CHUNK_BYTES,
    ) -> None:
        super().__init__()
        if mode not in SCM_MODES:
            raise ValueError(f"mode must be one of {', '.join(SCM_MODES)}; got {mode!r}")
        self.channels = check_int(channels, "channels")
        self.out_channels = channels
        self.mode = mode
        self.max_global_positions = check_int(max_global_positions, "max_global_positions")
        self.max_chunk_bytes = (
            None if max_chunk_bytes is None else check_int(max_chunk_bytes, "max_chunk_bytes")
        )
        self.theta = ThetaPredictor(channels, num_levels, hidden_channels=hidden_channels, function=function)
        self.function = self.theta.function
        self.num_levels = self.function.num_levels

    @classmethod
    def from_config(cls, cfg: Config, channels: int) -> SemanticCorrelationModule:
        """The SCM of ``cfg.model.semantic`` / ``cfg.model.correlation`` on ``channels`` channels."""
        cor, sem = cfg.model.correlation, cfg.model.semantic
        return cls(
            channels,
            cor.num_levels,
            sem.scm_mode,
            hidden_channels=cor.hidden_channels,
            max_global_positions=sem.max_global_positions,
            function=cor.function,
        )

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_levels={self.num_levels}, mode={self.mode!r}, "
            f"function={self.function.name!r}"
        )

    def params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """θ^hor, θ^ver for every pixel: each ``(B, H, W, P)``."""
        return self.theta(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "global" and x.dim() == 4:
            # Refuse before spending anything on the θ predictor.
            check_global_size(
                x.shape[0],
                x.shape[-2],
                x.shape[-1],
                x.element_size(),
                what="global SCM aggregation",
                argument="max_global_positions",
                max_positions=self.max_global_positions,
                max_chunk_bytes=self.max_chunk_bytes,
            )
        theta_hor, theta_ver = self.params(x)
        if self.mode == "axial":
            return x + _axial_aggregate(x, theta_hor, theta_ver, self.function)
        batch, _, height, width = x.shape
        positions, size = height * width, x.element_size()
        if use_dense(batch, positions, size, self.max_global_positions, self.max_chunk_bytes):
            return x + _global_aggregate(x, theta_hor, theta_ver, self.function)
        chunk = query_chunk_size(batch, positions, size, self.max_chunk_bytes)
        return x + _global_aggregate_chunked(x, theta_hor, theta_ver, self.function, chunk)

    def axial_weights(self, x: Tensor, point: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Softmax weights of Eq. 9 for the pixel ``point = (row, col)``.

        Returns ``(row_weights (B, W), col_weights (B, H))``: the weight of each pixel of u's
        row (from G(θ_u^hor, v_x)) and of u's column (from G(θ_u^ver, v_y)).
        """
        _, _, height, width = x.shape
        row, col = check_point(point, height, width)
        theta_hor, theta_ver = self.params(x)
        xs = pixel_coords(width, device=x.device, dtype=theta_hor.dtype)
        ys = pixel_coords(height, device=x.device, dtype=theta_ver.dtype)
        row_w = torch.softmax(self.function.evaluate(theta_hor[:, row, col], xs, width), dim=-1)
        col_w = torch.softmax(self.function.evaluate(theta_ver[:, row, col], ys, height), dim=-1)
        return row_w, col_w

    def correlation_map(self, x: Tensor, point: Sequence[int]) -> Tensor:
        """cor_2d(u, v) (Eq. 6) between ``u = point = (row, col)`` and every v: ``(B, H, W)``."""
        check_point(point, x.shape[-2], x.shape[-1])  # before spending anything on θ
        theta_hor, theta_ver = self.params(x)
        return correlation_map_from_theta(theta_hor, theta_ver, point, self.function)


def _axial_aggregate(
    x: Tensor, theta_hor: Tensor, theta_ver: Tensor, function: CorrelationFunction
) -> Tensor:
    """f^S of Eq. 9 (DESIGN's axes) as two batched matmuls; G is ``function``."""
    _, _, height, width = x.shape
    xs = pixel_coords(width, device=x.device, dtype=theta_hor.dtype)
    ys = pixel_coords(height, device=x.device, dtype=theta_ver.dtype)
    # Row term: weights[b, h, u_x, v_x] = softmax_{v_x} G(θ^hor_{(h, u_x)}, v_x).
    row_w = torch.softmax(function.evaluate(theta_hor, xs, width), dim=-1)  # (B, H, W, W)
    # Column term: weights[b, u_y, w, v_y] = softmax_{v_y} G(θ^ver_{(u_y, w)}, v_y).
    col_w = torch.softmax(function.evaluate(theta_ver, ys, height), dim=-1)  # (B, H, W, H)
    # (B, H, W, W) @ (B, H, W, C): batched over (B, H), contracts the row positions v_x.
    row_f = torch.matmul(row_w, x.permute(0, 2, 3, 1))  # (B, H, W, C)
    # (B, W, H, H) @ (B, W, H, C): batched over (B, W), contracts the column positions v_y.
    col_f = torch.matmul(col_w.transpose(1, 2), x.permute(0, 3, 2, 1))  # (B, W, H, C)
    return row_f.permute(0, 3, 1, 2) + col_f.permute(0, 3, 2, 1)


def _global_aggregate(
    x: Tensor, theta_hor: Tensor, theta_ver: Tensor, function: CorrelationFunction
) -> Tensor:
    """f^S of Eq. 8: softmax over all HW positions of cor_2d(u, v), all (B, HW, HW) weights at once.

    The path for small maps (whose weights fit one block), and the reference that
    :func:`_global_aggregate_chunked` is tested against.
    """
    batch, channels, height, width = x.shape
    xs = pixel_coords(width, device=x.device, dtype=theta_hor.dtype)
    ys = pixel_coords(height, device=x.device, dtype=theta_ver.dtype)
    cor = _correlation_2d(theta_hor, theta_ver, xs, ys, width, height, function)  # (B, H, W, H, W)
    weights = torch.softmax(cor.reshape(batch, height * width, height * width), dim=-1)
    feats = x.reshape(batch, channels, height * width).transpose(1, 2)  # (B, HW, C)
    out = torch.bmm(weights, feats)  # (B, HW, C)
    return out.transpose(1, 2).reshape(batch, channels, height, width)


def _global_aggregate_chunked(
    x: Tensor, theta_hor: Tensor, theta_ver: Tensor, function: CorrelationFunction, chunk: int
) -> Tensor:
    """f^S of Eq. 8 as :func:`_global_aggregate`, ``chunk`` query pixels at a time (O(B·chunk·HW) memory).

    A block's scores are cor_2d(u, v) = G(θ_u^ver, v_y)·G(θ_u^hor, v_x) (Eq. 6) for its pixels
    u against all v, evaluated from the block's θ only, so any correlation function works.
    """
    batch, channels, height, width = x.shape
    positions = height * width
    xs = pixel_coords(width, device=x.device, dtype=theta_hor.dtype)
    ys = pixel_coords(height, device=x.device, dtype=theta_ver.dtype)

    def score(block: tuple[Tensor, ...], keys: tuple[Tensor, ...]) -> Tensor:
        g_x = function.evaluate(block[0], xs, width)  # (B, n, W)
        g_y = function.evaluate(block[1], ys, height)  # (B, n, H)
        n = g_x.shape[1]
        # The outer product g_y ⊗ g_x per pixel as a batched (H, 1) @ (1, W) matmul: the same
        # products as _correlation_2d's broadcast, but its backward is two matrix-vector
        # products instead of (n, H, W) temporaries (7x faster backward on CPU).
        cor = torch.bmm(g_y.reshape(batch * n, height, 1), g_x.reshape(batch * n, 1, width))
        return cor.reshape(batch, n, positions)

    queries = (theta_hor.reshape(batch, positions, -1), theta_ver.reshape(batch, positions, -1))
    feats = x.reshape(batch, channels, positions).transpose(1, 2)  # (B, HW, C)
    out = chunked_softmax_aggregate(score, queries, (), feats, chunk)  # (B, HW, C)
    return out.transpose(1, 2).reshape(batch, channels, height, width)
