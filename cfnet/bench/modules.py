"""``cfnet bench modules``: time and memory of SCM (axial, global), non-local attention and ICM.

Modules (``--modules``; the first four are the default):

- ``scm-axial``, ``scm-global``, ``attention``, ``icm``: the modules as the model builds them,
  with their default limits. Global SCM (Eq. 8) and the non-local block build all (HW)² softmax
  weights at once while they fit one block of ``MAX_CHUNK_BYTES`` (32 MiB); above it global
  SCM goes a block of query pixels at a time (:mod:`cfnet.modules.chunked`) and the non-local
  block uses SDPA's fused kernel (blocks where the device has none); the note says which.
- ``scm-global-dense``, ``attention-dense``: the same modules with ``max_chunk_bytes=None``,
  the dense implementation from before query blocks, with their position limits raised to the
  map size: the reference the blocks are compared with, where it fits.

``--max-chunk-bytes`` sets the block budget of ``scm-global`` and ``attention`` (default the
modules' ``MAX_CHUNK_BYTES``), to compare block sizes.

For every module and map size it runs forward + backward of ``out.sum()`` on a random
``(batch, channels, H, W)`` input that requires grad (as inside a network), ``--warmup`` times
untimed (default once) and then ``--repeats`` times, and reports the median wall time and the
peak memory.

Memory, and how it is measured:

- CUDA: ``torch.cuda.max_memory_allocated()`` minus the memory allocated after building the
  module and before building the input — tensor bytes seen by PyTorch's allocator.
- CPU: each (module, size) runs in its own process, forked from a ``forkserver`` process that
  has only imported torch, so no earlier configuration's allocations or allocator caches
  count. In that process the module is built and run once forward + backward on a 4×4 map (so
  one-time library set-up — thread pools, kernel caches — is not charged to the
  configuration), the peak-RSS mark is reset to the current RSS
  (``/proc/self/clear_refs``, Linux ≥ 4.0, where available), the baseline is
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, and the reported peak is ``ru_maxrss`` after
  the warm-up and timed runs minus that baseline. Peak RSS counts every page the process
  touched — tensors, allocator slack, autograd buffers, library workspaces — so it is the
  honest "how much RAM did this take" number; the resolution is a page.

O((HW)²)-time configurations (global SCM, non-local block) whose memory estimate exceeds
``--memory-limit-gb`` are not run but reported as ``refused (needs ~X GB)`` (the other modules
always run; their estimate is recorded too). The dense path holds three B·(HW)² float tensors
at the peak of forward + backward (softmax output, the gradient of the softmax output and of
the logits; counted at 64×80), and the estimate allows four; query blocks hold about four
blocks of B·chunk·HW floats, and the estimate allows four plus the linear terms.

``--warmup`` sets the untimed runs before the ``--repeats`` timed ones (default 1; the module
has always run once on a 4×4 map before, so 0 only skips warming the allocator for this size,
which matters little for the minute-long global runs at P2).

Threads: on a shared, loaded CPU, several OpenMP threads per process oversubscribe the cores
and times become erratic (4–10× slower, varying run to run); ``--threads 1`` gives stable
single-core numbers. The load average at start and end is recorded with the results.
The θ predictors use ``--hidden-channels`` (default 64) and the ICM S = 16, N = 5.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from typing import Any

from cfnet.config import CorrelationConfig, SemanticConfig
from cfnet.modules.chunked import MAX_CHUNK_BYTES, fused_dot_attention, query_chunk_size, use_dense

_HIDDEN = CorrelationConfig.hidden_channels  # the config's θ predictor width

MODULE_NAMES = ("scm-axial", "scm-global", "attention", "icm", "scm-global-dense", "attention-dense")
DEFAULT_MODULES = MODULE_NAMES[:4]
QUADRATIC = {"scm-global", "attention", "scm-global-dense", "attention-dense"}  # O((HW)²) time
DENSE_ONLY = {"scm-global-dense", "attention-dense"}  # max_chunk_bytes=None
DEFAULT_SIZES = "32x32,64x64,100x167,200x334"
BYTES_PER_ELEMENT = 4  # float32 throughout

MEMORY_METHOD_CPU = (
    "peak RSS (ru_maxrss, high-water mark reset via /proc/self/clear_refs) of a fresh forkserver "
    "child per (module, size), minus its value after building the module and before the inputs"
)
MEMORY_METHOD_CUDA = "torch.cuda.max_memory_allocated() minus memory allocated before building the inputs"


# ------------------------------------------------------------------ arguments
def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"32x32,100x167"`` -> ``[(32, 32), (100, 167)]`` (height × width)."""
    sizes = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            h, w = (int(v) for v in part.split("x"))
        except ValueError:
            raise ValueError(f"--sizes: {part!r} is not HxW (e.g. 100x167)") from None
        if h < 1 or w < 1:
            raise ValueError(f"--sizes: {part!r} must have positive height and width")
        sizes.append((h, w))
    if not sizes:
        raise ValueError("--sizes: give at least one HxW")
    return sizes


def parse_modules(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in MODULE_NAMES]
    if bad or not names:
        raise ValueError(f"--modules: unknown {bad or text!r}; valid: {', '.join(MODULE_NAMES)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"HxW map sizes (default {DEFAULT_SIZES})")
    parser.add_argument("--channels", type=int, default=256, help="feature channels C (default 256)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before them (default 1)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--memory-limit-gb",
        type=float,
        default=8.0,
        help="refuse O((HW)^2) runs whose memory estimate exceeds this (default 8)",
    )
    parser.add_argument(
        "--modules",
        default=",".join(DEFAULT_MODULES),
        help=f"subset of {','.join(MODULE_NAMES)} (default {','.join(DEFAULT_MODULES)})",
    )
    parser.add_argument(
        "--hidden-channels",
        type=int,
        default=CorrelationConfig.hidden_channels,
        help=f"θ predictor width (default {CorrelationConfig.hidden_channels}, the config's)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default 0: torch's default)"
    )
    parser.add_argument(
        "--max-chunk-bytes",
        type=int,
        default=MAX_CHUNK_BYTES,
        help=f"block budget of scm-global and attention (default {MAX_CHUNK_BYTES}, the modules')",
    )


# ------------------------------------------------------------------ modules and estimates
def build_module(
    name: str,
    channels: int,
    height: int,
    width: int,
    hidden_channels: int = _HIDDEN,
    max_chunk_bytes: int = MAX_CHUNK_BYTES,
):
    from cfnet.modules import InstanceCorrelationModule, NonLocalBlock, SemanticCorrelationModule

    positions = height * width
    if name == "scm-axial":
        return SemanticCorrelationModule(channels, mode="axial", hidden_channels=hidden_channels)
    if name == "scm-global":
        return SemanticCorrelationModule(
            channels, mode="global", hidden_channels=hidden_channels, max_chunk_bytes=max_chunk_bytes
        )
    if name == "scm-global-dense":
        return SemanticCorrelationModule(
            channels,
            mode="global",
            hidden_channels=hidden_channels,
            max_global_positions=max(positions, 1),
            max_chunk_bytes=None,
        )
    if name == "attention":
        return NonLocalBlock(channels, max_chunk_bytes=max_chunk_bytes)
    if name == "attention-dense":
        return NonLocalBlock(channels, max_positions=max(positions, 1), max_chunk_bytes=None)
    if name == "icm":
        return InstanceCorrelationModule(
            channels, num_refs=CorrelationConfig.num_refs, hidden_channels=hidden_channels
        )
    raise ValueError(f"unknown module {name!r}; valid: {', '.join(MODULE_NAMES)}")


def estimate_bytes(
    name: str,
    batch: int,
    channels: int,
    height: int,
    width: int,
    hidden: int = _HIDDEN,
    max_chunk_bytes: int = MAX_CHUNK_BYTES,
) -> int:
    """Rough peak memory of forward + backward (float32), used only to refuse huge runs."""
    hw = height * width
    # Input, output, their gradients and a few permuted copies / conv activations.
    linear = (8 * channels + 4 * hidden) * batch * hw
    if name == "scm-axial":
        extra = 4 * batch * hw * (height + width)  # row/column logits, softmax, their grads
    elif name == "icm":
        extra = 4 * batch * hw * 256  # S² = 256 correlation features and their grads
    else:  # O((HW)²) time: logits/softmax output, grad of the output, grad of the logits, + slack
        extra = 4 * batch * global_chunk(name, batch, height, width, max_chunk_bytes) * hw
    return (linear + extra) * BYTES_PER_ELEMENT


def global_chunk(
    name: str, batch: int, height: int, width: int, max_chunk_bytes: int = MAX_CHUNK_BYTES
) -> int:
    """Query pixels per block of the global module ``name`` on this map; H·W means dense."""
    hw = height * width
    limit = SemanticConfig.max_global_positions  # the modules' default, as build_module uses
    if name in DENSE_ONLY or use_dense(batch, hw, BYTES_PER_ELEMENT, limit, max_chunk_bytes):
        return hw
    return query_chunk_size(batch, hw, BYTES_PER_ELEMENT, max_chunk_bytes)


def _path_note(name: str, batch: int, height: int, width: int, max_chunk_bytes: int, fused: bool) -> str:
    """How a global module aggregates on this map, for the table's note.

    ``fused``: whether SDPA has a fused kernel on the device, which the non-local block then uses
    instead of blocks (:class:`~cfnet.modules.NonLocalBlock`).
    """
    if name not in QUADRATIC:
        return ""
    chunk = global_chunk(name, batch, height, width, max_chunk_bytes)
    if chunk == height * width:
        return "dense"
    return "fused SDPA kernel" if name == "attention" and fused else f"blocks of {chunk} queries"


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ------------------------------------------------------------------ one measurement
def _max_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the RSS high-water mark to the current RSS
    except OSError:
        pass


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Build, warm up and time one (module, size); returns time and peak memory."""
    import torch

    device = torch.device(spec["device"])
    torch.manual_seed(0)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    module = build_module(
        spec["module"],
        spec["channels"],
        spec["height"],
        spec["width"],
        spec["hidden_channels"],
        spec["max_chunk_bytes"],
    ).to(device)
    # One-time library set-up (thread pools, kernel caches) before the baseline.
    tiny = torch.randn(1, spec["channels"], 4, 4, device=device, requires_grad=True)
    module(tiny).sum().backward()
    module.zero_grad(set_to_none=True)
    del tiny
    params = sum(p.numel() for p in module.parameters())
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        _reset_peak_rss()
        base = _max_rss_bytes()
    x = torch.randn(
        spec["batch"], spec["channels"], spec["height"], spec["width"], device=device, requires_grad=True
    )
    times = []
    for i in range(spec["warmup"] + spec["repeats"]):
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = module(x)
        out.sum().backward()
        if cuda:
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        del out
        x.grad = None
        module.zero_grad(set_to_none=True)
        if i >= spec["warmup"]:
            times.append(elapsed * 1000)
    peak = (torch.cuda.max_memory_allocated(device) if cuda else _max_rss_bytes()) - base
    tiny = torch.zeros(1, 2, 8, device=device)
    return {
        "params": params,
        "times_ms": times,
        "peak_memory_bytes": max(int(peak), 0),
        "fused": fused_dot_attention(tiny, tiny, tiny) is not None,
    }


def _worker(conn, spec: dict[str, Any]) -> None:
    try:
        conn.send({"ok": True, **measure(spec)})
    except BaseException as e:  # report it to the parent instead of dying silently
        conn.send({"ok": False, "error": f"{type(e).__name__}: {e}"})
    finally:
        conn.close()


def _measure_in_subprocess(ctx, spec: dict[str, Any]) -> dict[str, Any]:
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(child, spec), daemon=True)
    proc.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError:
        result = None
    proc.join()
    if result is None:
        return {"ok": False, "error": f"worker process died (exit code {proc.exitcode}; out of memory?)"}
    return result


# ------------------------------------------------------------------ the command
def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark described by ``args``; returns the JSON-ready report."""
    import torch
    from tqdm import tqdm

    sizes = parse_sizes(args.sizes)
    names = parse_modules(args.modules)
    for opt in ("channels", "batch", "repeats", "hidden_channels"):
        if getattr(args, opt) < 1:
            raise ValueError(f"--{opt.replace('_', '-')} must be >= 1, got {getattr(args, opt)}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    if args.max_chunk_bytes < 1:
        raise ValueError(f"--max-chunk-bytes must be >= 1, got {args.max_chunk_bytes}")
    if args.memory_limit_gb <= 0:
        raise ValueError(f"--memory-limit-gb must be positive, got {args.memory_limit_gb}")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    limit = args.memory_limit_gb * 1e9
    load_start = _load_average()

    ctx = None
    if device == "cpu":
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["torch", "cfnet.modules", "cfnet.bench.modules"])

    results = []
    configs = [(name, h, w) for name in names for h, w in sizes]
    bar = tqdm(configs, desc="bench modules", unit="run", file=sys.stderr, dynamic_ncols=True)
    for name, h, w in bar:
        bar.set_postfix_str(f"{name} {h}x{w}")
        est = estimate_bytes(
            name, args.batch, args.channels, h, w, args.hidden_channels, args.max_chunk_bytes
        )
        row: dict[str, Any] = {
            "module": name,
            "height": h,
            "width": w,
            "estimate_gb": round(est / 1e9, 3),
        }
        if name in QUADRATIC and est > limit:
            row.update(status="refused", note=f"refused (needs ~{_fmt_gb(est)} GB)")
            results.append(row)
            continue
        spec = {
            "module": name,
            "height": h,
            "width": w,
            "channels": args.channels,
            "batch": args.batch,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "hidden_channels": args.hidden_channels,
            "max_chunk_bytes": args.max_chunk_bytes,
            "device": device,
            "threads": args.threads,
        }
        if ctx is not None:
            res = _measure_in_subprocess(ctx, spec)
        else:
            try:
                res = {"ok": True, **measure(spec)}
            except torch.cuda.OutOfMemoryError as e:
                res = {"ok": False, "error": f"OutOfMemoryError: {str(e).splitlines()[0]}"}
            finally:
                torch.cuda.empty_cache()
        if not res.pop("ok"):
            row.update(status="error", note=res["error"])
        else:
            row.update(
                status="ok",
                params=res["params"],
                time_ms=round(statistics.median(res["times_ms"]), 3),
                times_ms=[round(t, 3) for t in res["times_ms"]],
                peak_memory_mb=round(res["peak_memory_bytes"] / 2**20, 1),
                note=_path_note(name, args.batch, h, w, args.max_chunk_bytes, res["fused"]),
            )
        results.append(row)

    if device == "cuda":
        device_name = torch.cuda.get_device_name(0)
    else:
        device_name = _cpu_model()
    return {
        "device": device,
        "device_name": device_name,
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": load_start,
        "load_average_end": _load_average(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "memory_method": MEMORY_METHOD_CUDA if device == "cuda" else MEMORY_METHOD_CPU,
        "config": {
            "sizes": [list(s) for s in sizes],
            "modules": names,
            "channels": args.channels,
            "batch": args.batch,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "hidden_channels": args.hidden_channels,
            "max_chunk_bytes": args.max_chunk_bytes,
            "memory_limit_gb": args.memory_limit_gb,
        },
        "results": results,
    }


def _fmt_gb(nbytes: float) -> str:
    gb = nbytes / 1e9
    return f"{gb:.0f}" if gb >= 10 else f"{gb:.2g}" if gb >= 0.01 else f"{gb:.1g}"


def format_table(report: dict[str, Any]) -> str:
    """A Markdown table of the report's results."""
    lines = [
        "| module | H×W | params | fwd+bwd (ms, median) | peak memory (MiB) | note |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in report["results"]:
        if r["status"] == "ok":
            time_s, mem_s, params = f"{r['time_ms']:.1f}", f"{r['peak_memory_mb']:.1f}", f"{r['params']:,}"
        else:
            time_s = mem_s = params = "—"
        lines.append(
            f"| {r['module']} | {r['height']}×{r['width']} | {params} | {time_s} | {mem_s} | {r['note']} |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    try:
        report = run(args)
    except ValueError as e:
        print(f"cfnet bench modules: {e}", file=sys.stderr)
        return 2
    cfg = report["config"]
    print(
        f"device: {report['device']} ({report['device_name']}), torch {report['torch_version']}, "
        f"{report['torch_threads']} threads; C={cfg['channels']}, batch {cfg['batch']}, "
        f"median of {cfg['repeats']} after {cfg['warmup']} warm-up"
    )
    print(f"memory: {report['memory_method']}")
    if report["load_average_start"] is not None:
        print(
            f"load average (1/5/15 min) at start {report['load_average_start']}, "
            f"at end {report['load_average_end']} on {report['nproc']} CPUs"
        )
    print(format_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    return 0 if all(r["status"] != "error" for r in report["results"]) else 1


if __name__ == "__main__":  # pragma: no cover - the CLI is `cfnet bench modules`
    _parser = argparse.ArgumentParser(prog="cfnet bench modules")
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
