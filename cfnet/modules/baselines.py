"""Ablation peers of the correlation modules (paper Tables 5–6).

- :class:`NonLocalBlock` — "att" of Table 5: the embedded-Gaussian non-local block of Wang et
  al. 2018, ``z = W_z · softmax(θ(x)ᵀ φ(x)) g(x) + x``, with 1×1 convs θ, φ, g (C → C/2 by
  default) and a zero-initialised output projection W_z (the paper zero-initialises the BN
  after W_z; without BN we zero W_z itself), so the block starts as the identity. No
  sub-sampling of φ/g. Like global SCM it is O((HW)²) in time; maps whose (HW)² weights exceed
  :data:`~cfnet.modules.chunked.MAX_CHUNK_BYTES` (or ``max_positions``) are aggregated in
  bounded memory by a fused ``scaled_dot_product_attention`` kernel (scale 1), or where none
  applies a block of query pixels at a time (:mod:`cfnet.modules.chunked`).
- :class:`AddCoords` — "coords" of Table 6: CoordConv as SOLOv2 uses it, two channels
  ``x`` then ``y`` (``linspace(-1, 1)`` along width and height) concatenated after the
  features.
- :class:`SinePositionEmbedding` — "sinusoidal" of Table 6: DETR's 2-D sine embedding
  (``PositionEmbeddingSine`` with no padding mask), added to the features. Its first C/2
  channels encode y, the last C/2 encode x; within each half channel i is
  ``sin(pos/T^(2⌊i/2⌋/(C/2)))`` for even i and ``cos(…)`` for odd i, and with ``normalize``
  the positions are the cumulative counts 1..L scaled to (0, 2π].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from cfnet._checks import check_int
from cfnet.config import SemanticConfig
from cfnet.modules.chunked import (
    MAX_CHUNK_BYTES,
    check_global_size,
    chunked_softmax_aggregate,
    fused_dot_attention,
    query_chunk_size,
    use_dense,
)

__all__ = ["NonLocalBlock", "AddCoords", "SinePositionEmbedding", "sine_position_embedding"]


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al. 2018) with residual; ``out_channels = channels``.

    ``max_positions`` is the largest H·W aggregated with all (HW)² weights at once (the dense
    path; the config's ``max_global_positions``); larger maps, and maps whose weights exceed
    ``max_chunk_bytes``, go through a fused attention kernel or, where none applies, a block of
    query pixels at a time. Before that existed it was the largest map accepted at all.
    ``max_chunk_bytes`` (default :data:`~cfnet.modules.chunked.MAX_CHUNK_BYTES`) bounds one
    block of weights; ``None`` means dense only, refusing maps above ``max_positions``, as
    before (for comparisons).
    """

    def __init__(
        self,
        channels: int,
        inter_channels: int | None = None,
        max_positions: int = SemanticConfig.max_global_positions,
        *,
        max_chunk_bytes: int | None = MAX_CHUNK_BYTES,
    ) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels")
        self.out_channels = channels
        if inter_channels is None:
            inter_channels = max(channels // 2, 1)
        self.inter_channels = check_int(inter_channels, "inter_channels")
        self.max_positions = check_int(max_positions, "max_positions")
        self.max_chunk_bytes = (
            None if max_chunk_bytes is None else check_int(max_chunk_bytes, "max_chunk_bytes")
        )
        self.theta = nn.Conv2d(channels, inter_channels, kernel_size=1)
        self.phi = nn.Conv2d(channels, inter_channels, kernel_size=1)
        self.g = nn.Conv2d(channels, inter_channels, kernel_size=1)
        self.out = nn.Conv2d(inter_channels, channels, kernel_size=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inter_channels={self.inter_channels}"

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"x must be (B, {self.channels}, H, W), got {tuple(x.shape)}")
        batch, _, height, width = x.shape
        positions, size = height * width, x.element_size()
        check_global_size(
            batch,
            height,
            width,
            size,
            what="the non-local block",
            argument="max_positions",
            max_positions=self.max_positions,
            max_chunk_bytes=self.max_chunk_bytes,
        )
        q = self.theta(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        k = self.phi(x).flatten(2)  # (B, C', HW)
        v = self.g(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        if use_dense(batch, positions, size, self.max_positions, self.max_chunk_bytes):
            attn = torch.softmax(torch.bmm(q, k), dim=-1)  # (B, HW, HW): f(x_i, x_j) / C(x)
            y = torch.bmm(attn, v)
        else:
            # Bounded memory: PyTorch's fused attention was 1.5x faster than query blocks on CPU
            # (docs/bench_modules.md); the blocks remain for devices/dtypes it does not cover.
            y = fused_dot_attention(q, k.transpose(1, 2), v)
            if y is None:  # f(x_i, x_j) = θ(x_i)ᵀφ(x_j), a block of queries at a time
                chunk = query_chunk_size(batch, positions, size, self.max_chunk_bytes)
                y = chunked_softmax_aggregate(_dot_scores, (q,), (k,), v, chunk)
        y = y.transpose(1, 2).reshape(batch, self.inter_channels, height, width)
        return x + self.out(y)


def _dot_scores(block: tuple[Tensor, ...], keys: tuple[Tensor, ...]) -> Tensor:
    """Non-local scores θ(x_i)ᵀφ(x_j) of a block of queries ``(B, n, C')`` against ``(B, C', HW)``."""
    return torch.bmm(block[0], keys[0])


class AddCoords(nn.Module):
    """CoordConv (SOLOv2): concatenates x then y coordinate channels in [-1, 1].

    ``channels`` is optional and only sets ``out_channels = channels + 2`` (the factory
    passes it).
    """

    def __init__(self, channels: int | None = None) -> None:
        super().__init__()
        self.channels = None if channels is None else check_int(channels, "channels")
        self.out_channels = None if channels is None else channels + 2

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"x must be (B, C, H, W), got {tuple(x.shape)}")
        if self.channels is not None and x.shape[1] != self.channels:
            raise ValueError(f"x must have {self.channels} channels, got {x.shape[1]}")
        batch, _, height, width = x.shape
        xs = torch.linspace(-1, 1, width, device=x.device, dtype=x.dtype)
        ys = torch.linspace(-1, 1, height, device=x.device, dtype=x.dtype)
        coord = torch.stack([xs[None, :].expand(height, width), ys[:, None].expand(height, width)], dim=0)
        return torch.cat([x, coord[None].expand(batch, -1, -1, -1)], dim=1)


def _check_even_channels(channels: object) -> None:
    if check_int(channels, "channels", 2, " and even for the sine embedding") % 2:
        raise ValueError(f"channels must be an even int >= 2 for the sine embedding, got {channels!r}")


def sine_position_embedding(
    channels: int,
    height: int,
    width: int,
    temperature: float = 10000.0,
    normalize: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """DETR's 2-D sine embedding of an unpadded ``height × width`` map: ``(channels, H, W)``."""
    _check_even_channels(channels)
    dtype = dtype or torch.get_default_dtype()
    num_feats = channels // 2
    # Positions as DETR computes them from an all-valid mask: cumulative counts 1..L.
    y_embed = torch.arange(1, height + 1, device=device, dtype=dtype)
    x_embed = torch.arange(1, width + 1, device=device, dtype=dtype)
    if normalize:
        eps, scale = 1e-6, 2 * math.pi
        y_embed = y_embed / (y_embed[-1:] + eps) * scale
        x_embed = x_embed / (x_embed[-1:] + eps) * scale
    i = torch.arange(num_feats, device=device, dtype=dtype)
    dim_t = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / num_feats)
    # Interleaved sin (even i) / cos (odd i); same as DETR's stack+flatten, and also defined
    # when C/2 is odd.
    even = torch.arange(num_feats, device=device) % 2 == 0

    def encode(pos: Tensor) -> Tensor:  # (L,) -> (num_feats, L)
        arg = pos[None, :] / dim_t[:, None]
        return torch.where(even[:, None], torch.sin(arg), torch.cos(arg))

    pos_y = encode(y_embed)[:, :, None].expand(num_feats, height, width)
    pos_x = encode(x_embed)[:, None, :].expand(num_feats, height, width)
    return torch.cat([pos_y, pos_x], dim=0)


class SinePositionEmbedding(nn.Module):
    """Adds DETR's 2-D sine position embedding to ``x``; ``channels`` must be even."""

    def __init__(self, channels: int, temperature: float = 10000, normalize: bool = True) -> None:
        super().__init__()
        _check_even_channels(channels)
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.channels = channels
        self.out_channels = channels
        self.temperature = float(temperature)
        self.normalize = bool(normalize)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, temperature={self.temperature:g}, normalize={self.normalize}"

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"x must be (B, {self.channels}, H, W), got {tuple(x.shape)}")
        pos = sine_position_embedding(
            self.channels,
            x.shape[-2],
            x.shape[-1],
            self.temperature,
            self.normalize,
            device=x.device,
            dtype=x.dtype,
        )
        return x + pos[None]
