"""Query blocks against ``scaled_dot_product_attention`` for global SCM (Eq. 8) and the non-local block.

The design question behind :mod:`cfnet.modules.chunked`: compute softmax(scores) @ f in bounded
memory with explicit query blocks, or with PyTorch's fused attention? For SCM, SDPA needs the
121-dim form of cor_2d (Eq. 6 with the linear form of Eq. 5): cor_2d(u, v) = q_u · k_v with
q_u = c(θ_u^ver) ⊗ c(θ_u^hor) and k_v = B_y(v_y) ⊗ B_x(v_x), scale 1. For the non-local block it
is θ(x)ᵀφ(x) with scale 1 (no 1/√d in the embedded Gaussian).

Each (kernel, variant, size) runs forward + backward in a fresh process (peak RSS above the
inputs, VmHWM reset as ``cfnet bench modules`` does), after one untimed run, and reports the time,
the peak memory, the largest relative difference to the dense result (forward and every
gradient, relative to each tensor's largest entry; dense only where it fits) and, for SDPA,
which kernel PyTorch chose. docs/bench_modules.md has the numbers.

    python scripts/bench_global_sdpa.py [--sizes 64x64,100x167] [--channels 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cfnet.bench.modules import _reset_peak_rss, parse_sizes  # noqa: E402
from cfnet.correlation import DFTCorrelation, pixel_coords  # noqa: E402
from cfnet.modules.chunked import chunked_softmax_aggregate, query_chunk_size  # noqa: E402
from cfnet.modules.scm import _global_aggregate, _global_aggregate_chunked  # noqa: E402

VARIANTS = ("dense", "blocks", "sdpa")
G = DFTCorrelation(5)  # N = 5: 11 numbers per axis, 121-dim SDPA queries and keys


def scm_inputs(batch: int, channels: int, height: int, width: int, gen: torch.Generator):
    x = torch.randn(batch, channels, height, width, generator=gen)
    # θ of the initialised predictor's scale (amplitudes ~0.1/n) plus noise: moderate scores.
    th = 0.3 * torch.randn(batch, height, width, G.num_params, generator=gen)
    tv = 0.3 * torch.randn(batch, height, width, G.num_params, generator=gen)
    return x, th, tv


def scm_sdpa(x, th, tv):
    batch, channels, height, width = x.shape
    hw = height * width
    c_hor = G.coefficients(th).reshape(batch, hw, -1)
    c_ver = G.coefficients(tv).reshape(batch, hw, -1)
    b_x = G.basis(pixel_coords(width, dtype=x.dtype), width)  # (P, W)
    b_y = G.basis(pixel_coords(height, dtype=x.dtype), height)  # (P, H)
    q = (c_ver[..., :, None] * c_hor[..., None, :]).reshape(batch, 1, hw, -1)  # index (p_y, p_x)
    k = (b_y[:, None, :, None] * b_x[None, :, None, :]).reshape(-1, hw).t()  # (HW, P²), same order
    # Keys and values contiguous along the last dim: otherwise SDPA falls back to its math
    # kernel, which builds the whole (HW)² weights.
    k = k.contiguous()
    v = x.reshape(batch, 1, channels, hw).transpose(2, 3).contiguous()
    k = k.expand(batch, 1, hw, k.shape[-1])
    # PyTorch's fused CPU kernel wants one head dim for q, k and v: zero-pad the shorter side
    # (zeros add nothing to q·k, and padded value channels are dropped).
    dim = max(q.shape[-1], channels)
    q, k = F.pad(q, (0, dim - q.shape[-1])), F.pad(k, (0, dim - k.shape[-1]))
    out = F.scaled_dot_product_attention(q, k, F.pad(v, (0, dim - channels)), scale=1.0)[..., :channels]
    return out.transpose(2, 3).reshape(batch, channels, height, width)


def scm_run(variant: str, x, th, tv):
    if variant == "dense":
        return _global_aggregate(x, th, tv, G)
    if variant == "blocks":
        chunk = query_chunk_size(x.shape[0], x.shape[-2] * x.shape[-1], x.element_size())
        return _global_aggregate_chunked(x, th, tv, G, chunk)
    return scm_sdpa(x, th, tv)


def nonlocal_inputs(batch: int, channels: int, height: int, width: int, gen: torch.Generator):
    inter, hw = channels // 2, height * width
    # θ(x), φ(x) as 1×1 convs of unit-variance features with PyTorch's default init give scores
    # of order 1; g(x) is the values.
    q = torch.randn(batch, hw, inter, generator=gen) / inter**0.25
    k = torch.randn(batch, hw, inter, generator=gen) / inter**0.25
    v = torch.randn(batch, hw, inter, generator=gen)
    return q, k, v


def nonlocal_run(variant: str, q, k, v):
    if variant == "dense":
        return torch.bmm(torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1), v)
    if variant == "blocks":
        chunk = query_chunk_size(q.shape[0], k.shape[1], q.element_size())
        return chunked_softmax_aggregate(
            lambda b, keys: torch.bmm(b[0], keys[0]), (q,), (k.transpose(1, 2),), v, chunk
        )
    return F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=1.0)[:, 0]


KERNELS = {"scm": (scm_inputs, scm_run), "nonlocal": (nonlocal_inputs, nonlocal_run)}


def _peak_rss_bytes() -> int:
    """VmHWM, the peak RSS of this process's memory, which ``_reset_peak_rss`` resets.

    Not ``ru_maxrss``: after fork + exec that also holds the parent's RSS at the fork, a floor
    that hides everything smaller (the bench's forkserver children are not exec'd).
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def one(kernel: str, variant: str, height: int, width: int, channels: int, threads: int, out: Path) -> None:
    """Measure one (kernel, variant, size) in this process; write outputs and gradients to ``out``."""
    torch.set_num_threads(threads)
    make, run = KERNELS[kernel]
    gen = torch.Generator().manual_seed(0)
    inputs = [t.requires_grad_() for t in make(1, channels, height, width, gen)]
    small = make(1, channels, 4, 4, gen)
    run(variant, *[t.requires_grad_() for t in small]).sum().backward()  # library set-up
    _reset_peak_rss()
    base = _peak_rss_bytes()
    times = []
    for _ in range(2):  # one untimed, one timed
        start = time.perf_counter()
        result = run(variant, *inputs)
        upstream = torch.randn(result.shape, generator=torch.Generator().manual_seed(1))
        grads = torch.autograd.grad(result, inputs, upstream)
        times.append(time.perf_counter() - start)
    peak = _peak_rss_bytes() - base
    kernel_ops = ""
    if variant == "sdpa":
        from torch.profiler import profile

        with profile() as prof:
            run(variant, *small).sum().backward()
        kernel_ops = ", ".join(sorted({e.key for e in prof.key_averages() if "attention" in e.key}))
    torch.save({"out": result.detach(), "grads": grads}, out)
    print(json.dumps({"time_s": round(times[-1], 2), "peak_mib": round(peak / 2**20, 1), "ops": kernel_ops}))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="64x64,100x167")
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--kernels", default="scm,nonlocal")
    p.add_argument("--one", nargs=5, metavar=("KERNEL", "VARIANT", "H", "W", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        kernel, variant, h, w, out = args.one
        one(kernel, variant, int(h), int(w), args.channels, args.threads, Path(out))
        return
    tmp = Path(subprocess.check_output(["mktemp", "-d"], text=True).strip())
    print(f"torch {torch.__version__}, {args.threads} thread(s), C = {args.channels}, batch 1")
    print(
        "| kernel | H×W | variant | fwd+bwd (s) | peak memory (MiB) | max rel. diff to dense | SDPA kernel |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for kernel in args.kernels.split(","):
        for h, w in parse_sizes(args.sizes):
            results = {}
            for variant in VARIANTS:
                path = tmp / f"{kernel}-{variant}-{h}x{w}.pt"
                cmd = [sys.executable, __file__, "--one", kernel, variant, str(h), str(w), str(path)]
                cmd += ["--channels", str(args.channels), "--threads", str(args.threads)]
                res = json.loads(subprocess.check_output(cmd, text=True).strip().splitlines()[-1])
                saved = torch.load(path, weights_only=True)
                if "dense" in results:
                    ref = results["dense"][1]
                    diffs = [rel(saved["out"], ref["out"])]
                    diffs += [rel(a, b) for a, b in zip(saved["grads"], ref["grads"])]
                    diff = f"{max(diffs):.1e}"
                else:
                    diff = "—"
                results[variant] = (res, saved)
                print(
                    f"| {kernel} | {h}×{w} | {variant} | {res['time_s']:.2f} | {res['peak_mib']:.0f} "
                    f"| {diff} | {res['ops'] or '—'} |",
                    flush=True,
                )
                path.unlink()


if __name__ == "__main__":
    main()
