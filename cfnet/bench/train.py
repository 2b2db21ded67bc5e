"""``cfnet bench train``: training throughput (img/s) and where an iteration's time goes.

    cfnet bench train [--preset shapes-tiny] [--data DIR] [--iters 20] [--warmup 3] \\
        [--vs "data.num_workers=1"] [--device auto|cpu|cuda] [--amp] [--json FILE]

Each model is trained as :func:`cfnet.engine.train.train` does it — the same optimiser
(:func:`~cfnet.engine.solver.build_optimizer`), schedule, gradient clipping, seeded data stream
(:class:`~cfnet.data.sampler.InfiniteShardSampler` + :class:`~cfnet.data.sampler.SeededSamples`,
``data.num_workers`` loader processes) — and every iteration is split by wall-clock timers into

* ``data``: waiting for the next batch from the loader and moving it to the device;
* ``forward``: the model's loss forward (target assignment included) and reading the loss value
  back (the trainer does it for its divergence check);
* ``backward``: ``zero_grad`` + ``backward``;
* ``optimizer``: gradient clipping, the optimiser step and the schedule.

On the CPU the timers need no synchronisation (the work is done when the call returns); on CUDA
every boundary synchronises. ``img/s`` is the batch size over the median iteration time (the
median makes one slow iteration, e.g. a loader worker starting, not count). With ``--vs`` a
variant (the same preset plus overrides) is trained side by side, one iteration each in turn
(base, variant, base, …), so a change of the machine's load hits both alike; both start from the
same weights and see the same batches, and the loss of each iteration is recorded, so the JSON
shows whether a speed-up left the loss curve alone. Without ``--data`` a small ``shapes`` training
split (``--num-images``, 128 px, seed 0) is generated in a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from cfnet.engine.runtime import to_device

__all__ = ["add_arguments", "main", "TrainBench", "STAGES"]

STAGES = ("data", "forward", "backward", "optimizer")


class TrainBench:
    """One model trained as the trainer does, one timed iteration per :meth:`step` call."""

    def __init__(self, cfg, train_dir: Path, device: torch.device, amp: bool = False) -> None:
        from torch.utils.data import DataLoader

        from cfnet.data import InfiniteShardSampler, PanopticDataset, SeededSamples, build_transforms, collate
        from cfnet.engine.solver import build_optimizer, build_scheduler
        from cfnet.model import build_model

        s = cfg.solver
        self.device, self.batch_size = device, s.batch_size
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg).to(device).train()
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_scheduler(cfg, self.optimizer)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.max_norm = s.clip_grad_norm if s.clip_grad_norm is not None else float("inf")
        self.use_amp = amp
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            dtype = torch.bfloat16
        self.autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if amp else contextlib.nullcontext
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp and dtype == torch.float16)
        dataset = PanopticDataset(
            train_dir, categories=self.model.categories, transforms=build_transforms(cfg, train=True)
        )
        sampler = InfiniteShardSampler(len(dataset), seed=cfg.seed, total_batch=s.batch_size)
        loader = DataLoader(
            SeededSamples(dataset, cfg.seed), batch_size=s.batch_size, sampler=sampler,
            num_workers=cfg.data.num_workers, collate_fn=collate, pin_memory=device.type == "cuda",
        )
        self._loader = loader
        self._iter = iter(loader)
        self.losses: list[float] = []
        self.times: list[dict[str, float]] = []

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def step(self) -> dict[str, float]:
        t0 = self._now()
        images, targets = next(self._iter)
        images = [im.to(self.device, non_blocking=True) for im in images]
        targets = [to_device(t, self.device) for t in targets]
        t1 = self._now()
        with self.autocast():
            losses = self.model(images, targets)
        names = sorted(losses)
        total = sum(losses[k] for k in names)
        loss = float(total.detach().float())
        t2 = self._now()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        t3 = self._now()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        t4 = self._now()
        times = {
            "data": t1 - t0, "forward": t2 - t1, "backward": t3 - t2, "optimizer": t4 - t3, "total": t4 - t0,
        }
        self.losses.append(loss)
        self.times.append(times)
        return times

    def close(self) -> None:
        del self._iter


def summarize(name: str, overrides: list[str], bench: TrainBench, warmup: int) -> dict:
    runs = bench.times[warmup:]
    median = statistics.median(t["total"] for t in runs)
    sums = {s: sum(t[s] for t in runs) for s in STAGES}
    whole = sum(sums.values())
    return {
        "name": name,
        "overrides": overrides,
        "batch_size": bench.batch_size,
        "images_per_s": bench.batch_size / median,
        "median_iter_ms": 1000 * median,
        "stage_median_ms": {s: 1000 * statistics.median(t[s] for t in runs) for s in STAGES},
        "share": {s: sums[s] / whole for s in STAGES},
        "iter_ms": [1000 * t["total"] for t in bench.times],
        "losses": bench.losses,
    }


def _format(results: list[dict]) -> str:
    head = f"{'model':<8} {'img/s':>7} {'ms/iter':>8} " + " ".join(f"{s:>10}" for s in STAGES)
    lines = [head, "-" * len(head)]
    for r in results:
        share = " ".join(f"{100 * r['share'][s]:>9.1f}%" for s in STAGES)
        lines.append(f"{r['name']:<8} {r['images_per_s']:>7.2f} {r['median_iter_ms']:>8.1f} {share}")
    if len(results) > 1:
        base, var = results[0], results[1]
        lines.append(f"speed-up variant / base: {var['images_per_s'] / base['images_per_s']:.3f}x")
        rel = max(
            (abs(a - b) / max(abs(a), 1e-12) for a, b in zip(base["losses"], var["losses"])), default=0.0
        )
        lines.append(f"largest relative loss difference over {len(base['losses'])} iterations: {rel:.2e}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="shapes-tiny", help="preset or YAML (default shapes-tiny)")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value for the base model")
    parser.add_argument("--data", type=Path, default=None, help="training split (default: generate shapes)")
    parser.add_argument("--num-images", type=int, default=64, help="generated images (default 64)")
    parser.add_argument("--size", type=int, default=128, help="side of the generated images (default 128)")
    parser.add_argument("--batch-size", type=int, default=None, help="override solver.batch_size")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per model (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first (default 3)")
    parser.add_argument("--vs", default=None, help='overrides of the variant, one string: "key=value ..."')
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--amp", action="store_true", help="autocast (bf16/fp16 on CUDA, bf16 on the CPU)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")


def run(args: argparse.Namespace) -> dict:
    """The benchmark of ``args`` (see :func:`add_arguments`); returns what ``--json`` writes."""
    from cfnet.bench.model import machine_info
    from cfnet.config import get_config
    from cfnet.data import resolve_splits
    from cfnet.engine.runtime import resolve_device

    device = resolve_device(args.device)
    extra = [f"solver.batch_size={args.batch_size}"] if args.batch_size else []
    variants = [("base", list(args.overrides) + extra)]
    if args.vs:
        variants.append(("variant", list(args.overrides) + extra + shlex.split(args.vs)))
    cfgs = [(name, ov, get_config(args.preset, ov)) for name, ov in variants]
    with tempfile.TemporaryDirectory(prefix="cfnet-bench-train-") as tmp:
        if args.data is None:
            from cfnet.data import generate_shapes

            train_dir = generate_shapes(
                tmp, num_train=args.num_images, num_val=0, size=args.size, seed=0, progress=False
            )["train"]
        else:
            train_dir, _ = resolve_splits(args.data)
        benches = [(name, ov, TrainBench(cfg, train_dir, device, amp=args.amp)) for name, ov, cfg in cfgs]
        try:
            for _ in range(args.warmup + args.iters):
                for _, _, bench in benches:  # alternating: base, variant, base, ...
                    bench.step()
        finally:
            for _, _, bench in benches:
                bench.close()
    results = [summarize(name, ov, bench, args.warmup) for name, ov, bench in benches]
    return {
        "preset": args.preset,
        "iters": args.iters,
        "warmup": args.warmup,
        "amp": args.amp,
        "machine": machine_info(device),
        "models": results,
        "speedup": results[1]["images_per_s"] / results[0]["images_per_s"] if len(results) > 1 else None,
    }


def main(args: argparse.Namespace) -> int:
    from cfnet.config import ConfigError

    if args.iters < 1 or args.warmup < 0:
        print("cfnet bench train: --iters must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    try:
        out = run(args)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"cfnet bench train: {e}", file=sys.stderr)
        return 2
    print(_format(out["models"]))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0
