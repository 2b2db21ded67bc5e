"""``cfnet bench gpu``: the GPU checks in one go (about 5 minutes on one H100), one JSON + one Markdown.

    cfnet bench gpu --out results/gpu-check            # on a machine with one CUDA device
    cfnet bench gpu --device cpu --dry-run --out /tmp/x  # the same code path, tiny sizes (CI)

1. **Training with AMP vs the CPU.** ``shapes-tiny`` (batch 8, 128 px, a generated ``shapes``
   training split) is trained ``--train-iters`` iterations on the device under autocast (bf16
   where the GPU supports it, else fp16 with a GradScaler — what ``cfnet train`` does), then the
   first ``--compare-iters`` iterations again in float32 on the device and on the CPU, all from the
   same seed, weights and batches. The JSON keeps the three loss curves; the check reports the
   largest relative difference of each device curve from the CPU one over the compared
   iterations, and at the first iteration (before any update: the pure numerical difference).
   The fp32 runs have TF32 switched off (cuDNN allows it for convolutions by default). It passes
   when the first-iteration difference is under 1e-3 (fp32) and 2e-2 (AMP), and the whole compared
   curve stays within 5 % (AdamW amplifies round-off a little every step). Also reported: the
   device's img/s, its split into data, forward, backward and optimiser, and the peak memory.
2. **Inference latency** — ``cfnet bench model`` for ``paper-r50`` (ours) against the Table-8
   baseline (``--vs``) and torchvision's Mask R-CNN (``--vs-torchvision``) at 800×1333, in fp32
   and with ``--amp``, with the peak memory of each model.
3. **The modules** — ``cfnet bench modules`` (forward + backward time and peak memory of the
   axial / global SCM, non-local attention and the ICM) at P2 of an 800×1333 input (200×334) and
   at half that side.

Every timer synchronises the device first (``torch.cuda.synchronize``), peak memory is
``torch.cuda.max_memory_allocated`` after a reset, and the timings are medians after warm-up.
Outputs in ``--out``: ``gpu_check.json`` (everything, including the machine) and
``gpu_check.md`` (the tables). A part that fails (an exception, say out of memory) is recorded
with its traceback and the others still run; the exit status is 1 when a part failed or the loss
check did not pass (the files are written anyway).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

__all__ = ["add_arguments", "main", "run", "format_markdown"]

FP32_FIRST_TOL = 1e-3
AMP_FIRST_TOL = 2e-2
CURVE_TOL = 5e-2
BASELINE = "model.semantic.module=none model.semantic.num_convs=3 model.instance.position=coords"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes everywhere (the CI check)")
    parser.add_argument("--train-iters", type=int, default=300, help="AMP training iterations (default 300)")
    parser.add_argument("--compare-iters", type=int, default=20, help="iterations compared with the CPU")
    parser.add_argument("--num-images", type=int, default=256, help="generated training images (default 256)")
    parser.add_argument("--model-preset", default="paper-r50", help="`bench model` preset (paper-r50)")
    parser.add_argument("--model-size", default="800x1333", help="input of `bench model` (default 800x1333)")
    parser.add_argument("--model-repeats", type=int, default=10)
    parser.add_argument("--model-warmup", type=int, default=3)
    parser.add_argument("--module-sizes", default="100x167,200x334", help="maps of `bench modules`")
    parser.add_argument("--workers", type=int, default=4, help="loader processes on the device (4)")


def _dry(args: argparse.Namespace) -> argparse.Namespace:
    """Tiny sizes: the same code path in seconds on a CPU."""
    args = argparse.Namespace(**vars(args))
    args.train_iters, args.compare_iters, args.num_images = 3, 2, 8
    args.model_preset, args.model_size, args.model_repeats, args.model_warmup = "shapes-tiny", "64x96", 1, 0
    args.module_sizes, args.workers = "8x8", 0
    return args


def _relative(a: list[float], b: list[float]) -> list[float]:
    return [abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b)]


@contextlib.contextmanager
def _strict_fp32():
    """No TF32 in cuDNN convolutions or matmuls (cuDNN allows it by default): fp32 means fp32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _train_curves(args, device: torch.device, tmp: Path) -> dict:
    from cfnet.bench.train import TrainBench, summarize
    from cfnet.config import get_config
    from cfnet.data import generate_shapes

    size = 64 if args.dry_run else 128
    train_dir = generate_shapes(tmp, num_train=args.num_images, num_val=0, size=size, seed=0, progress=False)[
        "train"
    ]
    extra = ["solver.batch_size=2"] if args.dry_run else []
    cfg_dev = get_config("shapes-tiny", [*extra, f"data.num_workers={args.workers}"])
    cfg_cpu = get_config("shapes-tiny", [*extra, "data.num_workers=0"])
    runs = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    amp = TrainBench(cfg_dev, train_dir, device, amp=True)
    for _ in range(args.train_iters):
        amp.step()
    amp.close()
    runs["device_amp"] = summarize("amp", [], amp, warmup=min(5, args.train_iters - 1))
    runs["device_amp"]["wall_s"] = time.perf_counter() - t
    runs["device_amp"]["peak_memory_mb"] = (
        torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    )
    for key, dev, cfg in (("device_fp32", device, cfg_dev), ("cpu_fp32", torch.device("cpu"), cfg_cpu)):
        with _strict_fp32():
            bench = TrainBench(cfg, train_dir, dev, amp=False)
            for _ in range(args.compare_iters):
                bench.step()
            bench.close()
        runs[key] = summarize(key, [], bench, warmup=min(1, args.compare_iters - 1))
    n = args.compare_iters
    cpu = runs["cpu_fp32"]["losses"][:n]
    check = {}
    for key, first_tol in (("device_fp32", FP32_FIRST_TOL), ("device_amp", AMP_FIRST_TOL)):
        rel = _relative(runs[key]["losses"][:n], cpu)
        check[key] = {
            "first_iteration_rel_diff": rel[0],
            "max_rel_diff": max(rel),
            "first_tolerance": first_tol,
            "curve_tolerance": CURVE_TOL,
            "ok": rel[0] < first_tol and max(rel) < CURVE_TOL,
        }
    return {"runs": runs, "check": check, "compare_iters": n, "train_iters": args.train_iters}


def _bench_model(args, device: torch.device, tmp: Path, amp: bool) -> dict:
    from cfnet.bench import model as bench_model

    parser = argparse.ArgumentParser()
    bench_model.add_arguments(parser)
    out = tmp / f"model_{'amp' if amp else 'fp32'}.json"
    argv = ["--preset", args.model_preset, "--size", args.model_size, "--vs", BASELINE,
            "--vs-torchvision", "maskrcnn_resnet50_fpn", "--repeats", str(args.model_repeats),
            "--warmup", str(args.model_warmup), "--device", device.type, "--json", str(out)]
    if amp:
        argv.append("--amp")
    code = bench_model.main(parser.parse_args(argv))
    if code:
        raise RuntimeError(f"cfnet bench model exited with {code}")
    return json.loads(out.read_text())


def _bench_modules(args, device: torch.device) -> dict:
    from cfnet.bench import modules as bench_modules

    parser = argparse.ArgumentParser()
    bench_modules.add_arguments(parser)
    argv = ["--sizes", args.module_sizes, "--device", device.type, "--repeats", "1" if args.dry_run else "5"]
    if args.dry_run:
        argv += ["--channels", "16", "--hidden-channels", "8"]
    return bench_modules.run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> dict:
    from cfnet.bench.model import machine_info
    from cfnet.engine.runtime import resolve_device

    device = resolve_device(args.device)
    if args.dry_run:
        args = _dry(args)
    report: dict = {"device": str(device), "dry_run": args.dry_run, "machine": machine_info(device)}
    report["errors"] = {}
    started = time.perf_counter()

    def section(key: str, fn) -> None:
        # one failing part must not cost the others (a GPU session may be a single try)
        t = time.perf_counter()
        try:
            report[key] = fn()
        except Exception as e:  # noqa: BLE001 - recorded, reported, and the exit status says so
            report[key] = None
            report["errors"][key] = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}"
            print(f"cfnet bench gpu: {key} failed: {type(e).__name__}: {e}", file=sys.stderr)
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print(f"cfnet bench gpu: {key} took {time.perf_counter() - t:.0f} s", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="cfnet-gpu-check-") as tmp:
        section("training", lambda: _train_curves(args, device, Path(tmp) / "shapes"))
        section("model_fp32", lambda: _bench_model(args, device, Path(tmp), amp=False))
        section("model_amp", lambda: _bench_model(args, device, Path(tmp), amp=True))
    section("modules", lambda: _bench_modules(args, device))
    report["wall_s"] = time.perf_counter() - started
    return report


def passed(report: dict) -> bool:
    """No section failed and the training curves agree with the CPU's."""
    tr = report.get("training")
    return not report["errors"] and tr is not None and all(c["ok"] for c in tr["check"].values())


def _model_rows(data: dict, precision: str) -> list[str]:
    rows = []
    peer = data.get("peer")
    peer_ms = next((m["median_ms"] for m in data["models"] if m["name"] == peer), None)
    names = {"base": "ours", "variant": "Table-8 baseline"}
    for m in data["models"]:
        ratio = f"{m['median_ms'] / peer_ms:.3f}" if peer_ms else "—"
        mem = f"{m['peak_memory_mb']:.0f}" if m.get("peak_memory_mb") is not None else "—"
        c = m["components_ms"]
        rows.append(
            f"| {names.get(m['name'], m['name'])} | {precision} | {m['params'] / 1e6:.2f} | "
            f"{m['median_ms']:.1f} | "
            f"{c['backbone']:.1f} | {c['scm'] + c['icm']:.1f} | {c['heads']:.1f} | {c['postprocess']:.1f} | "
            f"{mem} | {ratio} |"
        )
    return rows


def format_markdown(report: dict) -> str:
    from cfnet.bench.modules import format_table

    tr = report.get("training")
    m = report["machine"]
    lines = [
        f"# GPU check ({'dry run, ' if report['dry_run'] else ''}{report['device']})",
        "",
        f"Machine: {m.get('gpu', m.get('cpu', m['processor']))}, torch {m['torch']}, "
        f"{m['cpu_threads']} CPU threads; wall time {report['wall_s']:.0f} s. "
        f"Result: **{'passed' if passed(report) else 'FAILED'}**.",
    ]
    for key, err in report["errors"].items():
        lines += ["", f"**{key} failed:** `{err.splitlines()[0]}` (traceback in gpu_check.json)"]
    if tr is not None:
        lines += _training_lines(tr)
    for key, precision in (("model_fp32", "fp32"), ("model_amp", "AMP")):
        data = report.get(key)
        if data is None:
            continue
        size = "x".join(str(v) for v in data["size"])
        lines += [
            "",
            f"## Inference at {size}, {precision} ({data['preset']}, median ms per image, batch 1)",
            "",
            "| model | precision | params (M) | total | backbone | SCM + ICM | heads | post-proc. | peak MB "
            "| / Mask R-CNN |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *_model_rows(data, precision),
        ]
    if report.get("modules") is not None:
        lines += ["", "## Modules (forward + backward)", "", format_table(report["modules"])]
    return "\n".join(lines) + "\n"


def _training_lines(tr: dict) -> list[str]:
    from cfnet.bench.train import STAGES

    lines = [
        "",
        f"## Training shapes-tiny ({tr['train_iters']} iterations with AMP; first {tr['compare_iters']} "
        "compared with the CPU)",
        "",
        "| run | img/s | data | forward | backward | optimiser | peak memory (MB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, r in tr["runs"].items():
        share = " | ".join(f"{100 * r['share'][s]:.1f} %" for s in STAGES)
        mem = f"{r['peak_memory_mb']:.0f}" if r.get("peak_memory_mb") is not None else "—"
        lines.append(f"| {key} | {r['images_per_s']:.1f} | {share} | {mem} |")
    lines += ["", "| curve vs CPU fp32 | first iteration | max over compared | tolerances | ok |",
              "| --- | ---: | ---: | --- | --- |"]
    for key, c in tr["check"].items():
        lines.append(
            f"| {key} | {c['first_iteration_rel_diff']:.2e} | {c['max_rel_diff']:.2e} | "
            f"{c['first_tolerance']:g} / {c['curve_tolerance']:g} | {'yes' if c['ok'] else 'NO'} |"
        )
    return lines


def main(args: argparse.Namespace) -> int:
    from cfnet.config import ConfigError

    if args.device == "cuda" and not torch.cuda.is_available():
        print("cfnet bench gpu: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    if args.train_iters < 2 or not 1 <= args.compare_iters <= args.train_iters:
        print("cfnet bench gpu: need --train-iters >= 2 and 1 <= --compare-iters <= --train-iters",
              file=sys.stderr)
        return 2
    try:
        report = run(args)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"cfnet bench gpu: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    md = format_markdown(report)
    (args.out / "gpu_check.md").write_text(md)
    print(md)
    print(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}")
    return 0 if passed(report) else 1
