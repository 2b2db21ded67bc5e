"""Global SCM (Eq. 8) and the non-local block in query blocks against the dense implementation.

The dense path (all (HW)² weights at once, the implementation before query blocks) is the
reference: blocks must give the same forward and backward to 1e-5 relative in float32 (and to
rounding in float64), for any block size, including one that does not divide H·W.
"""

from __future__ import annotations

import pytest
import torch
from recording import RecordShapes

import cfnet.modules.baselines as baselines
import cfnet.modules.scm as scm
from cfnet.correlation import build_correlation_function
from cfnet.modules import NonLocalBlock, SemanticCorrelationModule
from cfnet.modules.chunked import (
    MAX_CHUNK_BYTES,
    check_global_size,
    chunked_softmax_aggregate,
    fused_dot_attention,
    query_chunk_size,
    use_dense,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REL = 1e-5  # float32


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = REL, scale: float = 0.0):
    """max |actual - expected| <= rel · max(max |expected|, scale).

    Relative to the tensor's largest entry, not entrywise: entries that are zero up to rounding
    (e.g. softmax weights ~1e-30) have no meaningful entrywise relative error. ``scale`` covers
    gradients that are exactly zero in exact arithmetic (see the non-local test).
    """
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    bound = rel * max(expected.abs().max().item(), scale)
    err = (actual - expected).abs().max().item()
    assert err <= bound, f"max error {err:.3g} above {bound:.3g}"


def _chunk_bytes(batch: int, positions: int, chunk: int, dtype=torch.float32) -> int:
    """A max_chunk_bytes that gives blocks of exactly ``chunk`` queries."""
    return batch * positions * chunk * torch.tensor([], dtype=dtype).element_size()


# ---------------------------------------------------------------- the kernel, Eq. 8


def _global_inputs(batch, channels, height, width, num_levels=2, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    p = 2 * num_levels + 1
    x = torch.randn(batch, channels, height, width, generator=gen, dtype=dtype)
    # θ of order 1: peaked, far-from-uniform softmax weights (amplitudes up to ~3, so cor_2d ~ ±10).
    th = torch.randn(batch, height, width, p, generator=gen, dtype=dtype)
    tv = torch.randn(batch, height, width, p, generator=gen, dtype=dtype)
    upstream = torch.randn(batch, channels, height, width, generator=gen, dtype=dtype)
    return x, th, tv, upstream


def _forward_backward(fn, x, th, tv, upstream):
    leaves = [t.detach().requires_grad_() for t in (x, th, tv)]
    out = fn(*leaves)
    return out.detach(), torch.autograd.grad(out, leaves, upstream)


@pytest.mark.parametrize("function", ["dft", "gaussian"])
@pytest.mark.parametrize(
    ("shape", "chunks"),
    [
        ((1, 3, 5, 7), [1, 4, 34, 35, 50]),  # 35 positions: 4 does not divide it; 35 and 50 = one block
        ((2, 4, 6, 9), [5, 13]),  # batch 2, non-square
        ((1, 2, 11, 4), [3, 44]),  # taller than wide
    ],
)
def test_global_scm_blocks_match_dense_forward_and_backward(function, shape, chunks):
    g = build_correlation_function(function, 2)
    x, th, tv, upstream = _global_inputs(*shape)
    out_d, grads_d = _forward_backward(lambda *a: scm._global_aggregate(*a, g), x, th, tv, upstream)
    for chunk in chunks:
        out_c, grads_c = _forward_backward(
            lambda *a, chunk=chunk: scm._global_aggregate_chunked(*a, g, chunk), x, th, tv, upstream
        )
        assert_rel_close(out_c, out_d)
        for got, want in zip(grads_c, grads_d):
            assert_rel_close(got, want)


def test_global_scm_blocks_match_dense_in_float64_to_rounding():
    g = build_correlation_function("dft", 2)
    x, th, tv, upstream = _global_inputs(2, 3, 7, 5, dtype=torch.float64)
    out_d, grads_d = _forward_backward(lambda *a: scm._global_aggregate(*a, g), x, th, tv, upstream)
    blocks = lambda *a: scm._global_aggregate_chunked(*a, g, 6)  # noqa: E731
    out_c, grads_c = _forward_backward(blocks, x, th, tv, upstream)
    assert_rel_close(out_c, out_d, rel=1e-12)
    for got, want in zip(grads_c, grads_d):
        assert_rel_close(got, want, rel=1e-12)


@pytest.mark.parametrize("grad_of", ["features", "theta"])
def test_blocks_compute_only_the_gradients_asked_for(grad_of):
    g = build_correlation_function("dft", 2)
    x, th, tv, upstream = _global_inputs(1, 3, 4, 6)
    x.requires_grad_(grad_of == "features")
    th.requires_grad_(grad_of == "theta")
    tv.requires_grad_(grad_of == "theta")
    leaves = [x] if grad_of == "features" else [th, tv]
    want = torch.autograd.grad(scm._global_aggregate(x, th, tv, g), leaves, upstream)
    got = torch.autograd.grad(scm._global_aggregate_chunked(x, th, tv, g, 5), leaves, upstream)
    for a, b in zip(got, want):
        assert_rel_close(a, b)
    with torch.no_grad():  # inference: no graph, same numbers
        assert_rel_close(scm._global_aggregate_chunked(x, th, tv, g, 5), scm._global_aggregate(x, th, tv, g))


def test_chunked_kernel_rejects_empty_blocks():
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        chunked_softmax_aggregate(lambda q, k: q[0], (torch.zeros(1, 2, 2),), (), torch.zeros(1, 2, 1), 0)


# ---------------------------------------------------------------- the modules


def _randomised(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (NonLocalBlock zero-initialises its output projection, which would
    give zero gradients to everything before it)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    return module


def _module_forward_backward(module, x, upstream):
    x = x.detach().requires_grad_()
    out = module(x)
    return out.detach(), torch.autograd.grad(out, [x, *module.parameters()], upstream)


def _modules(channels: int):
    yield "scm", _randomised(SemanticCorrelationModule(channels, 2, "global", hidden_channels=4))
    yield "nonlocal", _randomised(NonLocalBlock(channels))


@pytest.fixture(params=["fused", "blocks"])
def nonlocal_path(request, monkeypatch) -> str:
    """Above the dense budget the non-local block uses SDPA's fused kernel, or query blocks where
    none applies: "blocks" takes that fallback on every map. (SCM always uses blocks.)"""
    if request.param == "blocks":
        monkeypatch.setattr(baselines, "fused_dot_attention", lambda q, k, v: None)
    return request.param


@pytest.mark.parametrize(("batch", "height", "width", "chunk"), [(1, 6, 6, 5), (2, 5, 8, 7), (1, 9, 4, 35)])
def test_modules_above_the_budget_match_dense_forward_and_backward(
    nonlocal_path, batch, height, width, chunk
):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 6, height, width, generator=gen)
    upstream = torch.randn(batch, 6, height, width, generator=gen)
    for name, module in _modules(6):
        module.max_chunk_bytes = None  # dense: the implementation before blocks
        out_d, grads_d = _module_forward_backward(module, x, upstream)
        module.max_chunk_bytes = _chunk_bytes(batch, height * width, chunk)
        assert query_chunk_size(batch, height * width, 4, module.max_chunk_bytes) == chunk
        out_c, grads_c = _module_forward_backward(module, x, upstream)
        assert_rel_close(out_c, out_d)
        # φ's bias has an exactly-zero gradient (softmax is shift-invariant along a row, and
        # θ_iᵀb shifts row i), so both paths give rounding noise there: compare it to the largest
        # gradient instead.
        scale = max(g.abs().max().item() for g in grads_d)
        names = ["x", *(n for n, _ in module.named_parameters())]
        for param, got, want in zip(names, grads_c, grads_d):
            assert_rel_close(got, want, scale=scale if param == "phi.bias" else 0.0)
        assert grads_c[0].abs().max() > 0, name


def test_modules_above_the_budget_match_dense_under_cpu_autocast(nonlocal_path):
    # Training on CUDA runs under bf16 autocast: backward recomputes each block's weights under
    # forward's autocast state, and sums the blocks' gradients in float32.
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 6, 5, 7, generator=gen)
    upstream = torch.randn(2, 6, 5, 7, generator=gen)
    for name, module in _modules(6):
        results = []
        for budget in (None, _chunk_bytes(2, 35, 4)):
            module.max_chunk_bytes = budget
            with torch.autocast("cpu", dtype=torch.bfloat16):
                results.append(_module_forward_backward(module, x, upstream))
        (out_d, grads_d), (out_c, grads_c) = results
        assert out_c.dtype == out_d.dtype
        assert_rel_close(out_c, out_d, rel=3e-2)
        scale = max(g.abs().max().item() for g in grads_d)
        for got, want in zip(grads_c, grads_d):
            assert got.dtype == want.dtype, name
            assert_rel_close(got, want, rel=3e-2, scale=1e-2 * scale)


def _spy_on_paths(monkeypatch) -> list[str]:
    """Record which bounded-memory path every aggregation above the dense budget takes."""
    calls: list[str] = []

    def blocks(score, queries, keys, values, chunk):
        calls.append(f"blocks of {chunk}")
        return chunked_softmax_aggregate(score, queries, keys, values, chunk)

    def fused(q, k, v):
        calls.append("fused")
        return fused_dot_attention(q, k, v)

    monkeypatch.setattr(scm, "chunked_softmax_aggregate", blocks)
    monkeypatch.setattr(baselines, "chunked_softmax_aggregate", blocks)
    monkeypatch.setattr(baselines, "fused_dot_attention", fused)
    return calls


def test_size_switch_dense_while_the_weights_fit_one_block(monkeypatch):
    calls = _spy_on_paths(monkeypatch)
    batch, height, width = 2, 6, 7
    whole = _chunk_bytes(batch, 42, 42)  # B·(HW)² float32 weights
    x = torch.randn(batch, 4, height, width)
    for name, module in _modules(4):
        bounded = "blocks of 41" if name == "scm" else "fused"
        module.max_chunk_bytes = whole
        module(x)  # the weights fit one block: dense
        assert calls == []
        module.max_chunk_bytes = whole - 1  # one byte less: blocks of 41 queries
        module(x)
        assert calls == [bounded]
        calls.clear()
        # A map larger than max_global_positions is not dense either, whatever the budget.
        module.max_chunk_bytes = MAX_CHUNK_BYTES
        if isinstance(module, NonLocalBlock):
            module.max_positions = 41
        else:
            module.max_global_positions = 41
        module(x)
        assert calls == ["blocks of 42" if name == "scm" else "fused"]
        calls.clear()


def test_nonlocal_falls_back_to_blocks_where_no_fused_kernel_applies(monkeypatch):
    calls = _spy_on_paths(monkeypatch)
    module = _randomised(NonLocalBlock(4))
    module.max_chunk_bytes = _chunk_bytes(1, 30, 8)
    x = torch.randn(1, 4, 5, 6)
    want = module(x)
    assert calls == ["fused"]
    calls.clear()
    # No fused kernel for these inputs (SDPA refuses: "No available kernel"): the blocks run.
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", _no_kernel)
    assert_rel_close(module(x), want)
    assert calls == ["fused", "blocks of 8"]
    # Any other error is not swallowed.
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", _broken)
    with pytest.raises(RuntimeError, match="broken"):
        module(x)


def _no_kernel(*args, **kwargs):
    raise RuntimeError("No available kernel.  Aborting execution.")


def _broken(*args, **kwargs):
    raise RuntimeError("broken")


def test_default_budget_at_p2_of_an_800x1333_image():
    # P2 of 800×1344 (padded to a multiple of 32): 200×336 positions, float32, batch 1.
    positions = 200 * 336
    assert not use_dense(1, positions, 4, 16384, MAX_CHUNK_BYTES)
    chunk = query_chunk_size(1, positions, 4)
    assert chunk == MAX_CHUNK_BYTES // (positions * 4) == 124
    assert chunk * positions * 4 <= MAX_CHUNK_BYTES == 32 * 2**20  # a block: 32 MiB, not 72 GB
    # Small maps stay dense: 32×32 at batch 2 is 8 MiB of weights, 64×64 at batch 1 is 64 MiB.
    assert use_dense(2, 32 * 32, 4, 16384, MAX_CHUNK_BYTES)
    assert not use_dense(1, 64 * 64, 4, 16384, MAX_CHUNK_BYTES)
    assert use_dense(1, 64 * 64, 4, 16384, None)  # None: dense only


@pytest.mark.parametrize("kind", ["scm", "nonlocal"])
def test_bounded_paths_never_build_an_hw_by_hw_tensor(nonlocal_path, kind):
    batch, height, width, chunk = 1, 24, 20, 37
    positions = height * width
    module = dict(_modules(4))[kind]
    module.max_chunk_bytes = _chunk_bytes(batch, positions, chunk)
    x = torch.randn(batch, 4, height, width, requires_grad=True)
    rec = RecordShapes()
    with rec:
        module(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().max() > 0
    biggest = max(rec.sizes, key=lambda s: s[1])
    assert biggest[1] <= batch * chunk * positions, biggest  # one block of weights, never (HW)²
    if kind == "scm" or nonlocal_path == "blocks":
        assert sum(1 for _, n in rec.sizes if n == batch * chunk * positions) >= 4  # blocks were built
    else:  # SDPA's fused kernel: nothing of size HW × anything large
        assert biggest[1] <= positions * 4 * 2, biggest


def test_refuses_only_when_one_query_row_does_not_fit():
    x = torch.randn(2, 4, 6, 7)
    row = 2 * 42 * 4  # bytes of one query's weights: batch 2, 42 positions, float32
    for _, module in _modules(4):
        module.max_chunk_bytes = row  # blocks of one query: still runs
        assert module(x).shape == x.shape
        module.max_chunk_bytes = row - 1
        with pytest.raises(ValueError) as err:
            module(x)
        msg = str(err.value)
        assert "6x7" in msg and "batch 2" in msg and f"{row:,} bytes" in msg, msg
        assert f"max_chunk_bytes={row - 1:,}" in msg, msg
    with pytest.raises(ValueError, match="max_chunk_bytes"):
        SemanticCorrelationModule(4, mode="global", hidden_channels=2, max_chunk_bytes=0)
    with pytest.raises(ValueError, match="max_chunk_bytes"):
        NonLocalBlock(4, max_chunk_bytes=1.5)


def test_dense_only_refusal_names_the_position_limit():
    with pytest.raises(ValueError) as err:
        check_global_size(
            1, 130, 130, 4, what="the non-local block", argument="max_positions",
            max_positions=16384, max_chunk_bytes=None,
        )  # fmt: skip
    msg = str(err.value)
    assert "130x130" in msg and "max_positions=16384" in msg and f"{16900**2:,}" in msg
    # With blocks, the same map is fine.
    limits = {"argument": "max_positions", "max_positions": 16384}
    check_global_size(1, 130, 130, 4, what="x", max_chunk_bytes=MAX_CHUNK_BYTES, **limits)
