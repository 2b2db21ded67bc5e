"""Softmax aggregation over all positions in bounded memory (global SCM, Eq. 8; non-local block).

Global SCM (Eq. 8) and the non-local block of Table 5 both compute, for every query position
u of a map with K = H·W positions,

    out_u = Σ_v softmax_v(s(u, v)) · f_v,

with the score s(u, v) = cor_2d(u, v) = G(θ_u^hor, v_x)·G(θ_u^ver, v_y) (Eq. 6) for SCM and
s(u, v) = θ(x_u)ᵀφ(x_v) for the non-local block. Built whole, the weights are a B·K×K
tensor, 18 GB at P2 of an 800×1333 image (200×336 positions), and autograd keeps it for
backward, where its gradient and the softmax's join it: about 72 GB. Each row of the
softmax only needs its own scores, so the rows can be computed a block of queries at a time:

- forward: per block of ``chunk`` queries, scores ``(B, chunk, K)`` → softmax → ``@ f``;
  the block's weights are freed before the next block;
- backward (:class:`_ChunkedSoftmaxAggregate`, the way memory-efficient attention does it):
  nothing of size K×K is saved; per block the scores and weights are recomputed (the same
  operations on the same numbers, so the same bits as in forward), then
  ∂L/∂f += Wᵀ ∂L/∂out, ∂L/∂W = ∂L/∂out fᵀ, the softmax backward, and the score's own
  backward (through G, or θ/φ) by autograd on the block only.

Peak extra memory is a few blocks of ``B·chunk·K`` elements plus O(B·K·C) tensors, for
training as well as inference. The block size comes from a byte budget,
:data:`MAX_CHUNK_BYTES`, not from a config field: ``chunk = max_chunk_bytes // (B·K·bytes)``.
The result equals the dense computation up to float rounding (tested to 1e-5 relative in
float32, forward and backward); double backward is not supported.

Blocks or ``torch.nn.functional.scaled_dot_product_attention`` (SDPA, whose fused kernels do
the same in fast memory; scripts/bench_global_sdpa.py, numbers in docs/bench_modules.md):

- SCM uses the blocks. SDPA needs the 121-dim form of cor_2d (c(θ_u^ver) ⊗ c(θ_u^hor) against
  B_y(v_y) ⊗ B_x(v_x), Eq. 5's linear form), which exists only for correlation functions
  linear in a fixed basis (not ``gaussian``), zero-padded to the value width C because the
  fused CPU kernel wants one head dim: C multiply-adds per pair where the blocks spend one. On
  this project's CPU it took 12.3 s forward + backward at 100×167 against 7.8 s for the blocks.
- The non-local block uses SDPA (:func:`fused_dot_attention`): 6.2 s against 9.3 s for the
  blocks there, ~1e-6 from the dense result; the blocks remain its fallback where no fused
  kernel applies.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable
from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = [
    "MAX_CHUNK_BYTES",
    "query_chunk_size",
    "use_dense",
    "check_global_size",
    "chunked_softmax_aggregate",
    "fused_dot_attention",
]

MAX_CHUNK_BYTES = 32 * 2**20
"""Bytes of one block of softmax weights, ``B·chunk·K·element_size`` (32 MiB).

Forward holds two blocks at a time (scores, weights) and backward about four (scores,
weights, their gradient, the softmax backward's output), so the blocks add ~128 MiB to the
O(B·K·C) tensors. Why 32 MiB: on CPU it was the fastest of 8–128 MiB (global SCM at 100×167,
docs/bench_modules.md), 27 % less time than 128 MiB. glibc's malloc serves requests below its
mmap threshold (which adapts up to 32 MiB) from the heap and reuses that memory block after
block, while each larger block is a fresh mmap whose pages are faulted in and zeroed again."""

Score = Callable[[tuple[Tensor, ...], tuple[Tensor, ...]], Tensor]
"""``score(query_block, keys) -> (B, n, K)``: scores of the n queries of the block against all K
positions. ``query_block`` holds the query inputs sliced to the block on dim 1."""


def query_chunk_size(
    batch: int, positions: int, element_size: int, max_chunk_bytes: int = MAX_CHUNK_BYTES
) -> int:
    """Queries per block so that one ``(batch, chunk, positions)`` block fits ``max_chunk_bytes``.

    At most ``positions`` (the whole map: one block, i.e. the dense computation); 0 when not even
    one query's row of weights fits, which :func:`check_global_size` refuses.
    """
    row_bytes = batch * positions * element_size
    return min(positions, max_chunk_bytes // row_bytes)


def use_dense(
    batch: int, positions: int, element_size: int, max_positions: int, max_chunk_bytes: int | None
) -> bool:
    """Whether to build all B·K×K weights at once (the dense path) instead of query blocks.

    Dense when the whole weight tensor fits one block of ``max_chunk_bytes`` and the map has at
    most ``max_positions`` positions (``max_global_positions``): it then costs no more memory
    than the blocks would, and saves their recomputation in backward. ``max_chunk_bytes=None``
    always chooses dense: the implementation before query blocks, kept for comparison.
    """
    if max_chunk_bytes is None:
        return True
    return (
        positions <= max_positions
        and query_chunk_size(batch, positions, element_size, max_chunk_bytes) >= positions
    )


def check_global_size(
    batch: int,
    height: int,
    width: int,
    element_size: int,
    *,
    what: str,
    argument: str,
    max_positions: int,
    max_chunk_bytes: int | None,
) -> None:
    """Refuse a global aggregation (Eq. 8, or the non-local block) that cannot fit.

    ``argument`` is the name of the module's ``max_positions`` (``max_global_positions`` for SCM).
    With query blocks the smallest block is one query's row of
    weights, B·H·W elements (as much as one channel of the input), so only a budget below that
    is refused, naming ``max_chunk_bytes``. With ``max_chunk_bytes=None`` (dense only) a map of
    more than ``max_positions`` positions is refused, naming ``argument``, as before blocks.
    """
    positions = height * width
    if max_chunk_bytes is None:
        if positions > max_positions:
            raise ValueError(
                f"{what} on a {height}x{width} map needs ({positions})^2 = {positions**2:,} pairwise "
                f"weights at once with max_chunk_bytes=None (dense), above the limit of {max_positions} "
                f"positions ({argument}={max_positions}); use a smaller map, raise {argument}, "
                "or give max_chunk_bytes"
            )
    elif query_chunk_size(batch, positions, element_size, max_chunk_bytes) < 1:
        raise ValueError(
            f"{what} on a {height}x{width} map (batch {batch}) needs "
            f"{batch * positions * element_size:,} bytes for the softmax weights of a single query, above "
            f"max_chunk_bytes={max_chunk_bytes:,}; use a smaller map or raise max_chunk_bytes"
        )


def chunked_softmax_aggregate(
    score: Score, queries: Sequence[Tensor], keys: Sequence[Tensor], values: Tensor, chunk: int
) -> Tensor:
    """``softmax(score(queries, keys), dim=-1) @ values`` one block of ``chunk`` queries at a time.

    Args:
        score: ``score(query_block, keys) -> (B, n, K)`` (see :data:`Score`); differentiable in
            its inputs by autograd (it is re-run per block in backward).
        queries: tensors ``(B, Q, ...)`` sliced along dim 1 into blocks (θ^hor, θ^ver for SCM;
            θ(x) for the non-local block).
        keys: tensors the score uses whole (φ(x) for the non-local block; none for SCM).
        values: ``(B, K, C)``, the features f_v.
        chunk: queries per block (:func:`query_chunk_size`), >= 1.

    Returns ``(B, Q, C)``. Memory: O(B·chunk·K) beyond inputs and outputs, in backward too.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return _ChunkedSoftmaxAggregate.apply(score, chunk, len(queries), values, *queries, *keys)


# SDPA's kernels that never build the whole weights (on CPU, FLASH_ATTENTION is its blocked CPU
# kernel); its MATH fallback would build them, so it is never allowed here.
_FUSED_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]


def fused_dot_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor | None:
    """``softmax(q kᵀ) v`` (no scaling) with a fused SDPA kernel, or ``None`` where none applies.

    ``q (B, Q, d)``, ``k (B, K, d)``, ``v (B, K, d)`` → ``(B, Q, d)``. The fused kernels work on
    blocks in fast memory and save only the log-sum-exp per query for backward, so memory is
    O(B·(Q+K)·d). ``None`` (no fused kernel for these dtypes, shapes or this device) lets the
    caller use :func:`chunked_softmax_aggregate` instead.
    """
    try:
        # "kernel not used because …" warnings only explain the fallback the caller takes.
        with sdpa_kernel(_FUSED_BACKENDS), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = F.scaled_dot_product_attention(
                q.contiguous()[:, None], k.contiguous()[:, None], v.contiguous()[:, None], scale=1.0
            )
    except RuntimeError as e:
        if "No available kernel" not in str(e):
            raise
        return None
    return out[:, 0]


def _blocks(num: int, chunk: int):
    return ((start, min(start + chunk, num)) for start in range(0, num, chunk))


def _accumulator(t: Tensor) -> Tensor:
    """Zeros to sum per-block gradients of ``t`` into: float32 at least, so that summing blocks in
    bf16/fp16 (under autocast) does not lose what one dense matmul with fp32 accumulation keeps."""
    return torch.zeros(t.shape, dtype=torch.promote_types(t.dtype, torch.float32), device=t.device)


class _ChunkedSoftmaxAggregate(torch.autograd.Function):
    """Autograd of :func:`chunked_softmax_aggregate`: saves the inputs, recomputes each block's weights."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, score: Score, chunk: int, num_query_inputs: int, values: Tensor, *inputs: Tensor
    ) -> Tensor:
        queries, keys = inputs[:num_query_inputs], inputs[num_query_inputs:]
        batch, num = queries[0].shape[:2]
        out = values.new_empty(batch, num, values.shape[-1])
        for start, stop in _blocks(num, chunk):
            weights = torch.softmax(score(tuple(q[:, start:stop] for q in queries), keys), dim=-1)
            out[:, start:stop] = torch.bmm(weights, values)
            del weights  # free this block before the next one is built
        ctx.save_for_backward(values, *inputs)
        ctx.score, ctx.chunk, ctx.num_query_inputs = score, chunk, num_query_inputs
        # Backward recomputes the weights under the same autocast state, so they match forward's.
        device = values.device.type
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        values, *inputs = ctx.saved_tensors
        n = ctx.num_query_inputs
        needs = ctx.needs_input_grad[4:]
        queries, keys = inputs[:n], inputs[n:]
        # Keys are leaves of every block's small graph; their gradient sums over the blocks.
        keys = tuple(k.detach().requires_grad_(need) for k, need in zip(keys, needs[n:]))
        grads = [_accumulator(t) if need else None for t, need in zip(inputs, needs)]
        grad_values = _accumulator(values) if ctx.needs_input_grad[3] else None
        device, amp, amp_dtype = ctx.autocast
        for start, stop in _blocks(queries[0].shape[1], ctx.chunk):
            block = tuple(q[:, start:stop].detach().requires_grad_(need) for q, need in zip(queries, needs))
            with torch.enable_grad(), torch.autocast(device, dtype=amp_dtype, enabled=amp):
                scores = ctx.score(block, keys)
                weights = torch.softmax(scores.detach(), dim=-1)  # the same bits as forward's
            g = grad_out[:, start:stop]
            if grad_values is not None:  # ∂L/∂f += Wᵀ ∂L/∂out
                grad_values.baddbmm_(weights.transpose(1, 2).to(grad_values.dtype), g.to(grad_values.dtype))
            leaves = [t for t in (*block, *keys) if t.requires_grad]
            if not leaves:
                continue
            # ∂L/∂W = ∂L/∂out fᵀ in f's dtype (as autocast's bmm backward), then the softmax
            # backward autograd itself runs for torch.softmax (same kernel, same bits in float32).
            grad_weights = torch.bmm(g.to(values.dtype), values.transpose(1, 2)).to(weights.dtype)
            grad_scores = torch._softmax_backward_data(grad_weights, weights, -1, weights.dtype)
            del weights, grad_weights
            leaf_grads = iter(torch.autograd.grad(scores, leaves, grad_scores.to(scores.dtype)))
            for i, t in enumerate((*block, *keys)):
                if not t.requires_grad:
                    continue
                if i < n:
                    grads[i][:, start:stop] = next(leaf_grads)
                else:
                    grads[i] += next(leaf_grads)
        grads = [None if g is None else g.to(t.dtype) for g, t in zip(grads, inputs)]
        if grad_values is not None:
            grad_values = grad_values.to(values.dtype)
        return (None, None, None, grad_values, *grads)
