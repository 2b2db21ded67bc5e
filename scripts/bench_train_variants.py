"""Training-step variants that are not config options, interleaved on the same batches from the
same weights: the trainer's AdamW (for-loop, the CPU default), foreach AdamW, fused AdamW, and a
channels_last model. Prints img/s (median iteration), the forward / backward / optimiser medians,
and the largest relative loss difference from the trainer's curve. docs/benchmarks.md has the
numbers and why none of them is adopted.

    python scripts/bench_train_variants.py [--iters 14] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cfnet.config import get_config  # noqa: E402
from cfnet.data import PanopticDataset, SeededSamples, build_transforms, collate, generate_shapes  # noqa: E402
from cfnet.engine.solver import build_optimizer  # noqa: E402
from cfnet.model import build_model  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=14)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()}")
    cfg = get_config("shapes-tiny")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).train()
    with tempfile.TemporaryDirectory() as tmp:
        split = generate_shapes(tmp, num_train=48, num_val=0, size=128, seed=0, progress=False)["train"]
        transforms = build_transforms(cfg, train=True)
        ds = SeededSamples(PanopticDataset(split, categories=model.categories, transforms=transforms), 0)
        batches = [collate([ds[(0, (8 * j + i) % 48)] for i in range(8)]) for j in range(args.iters)]
    variants = {}
    for name in ("trainer", "foreach", "fused", "channels_last"):
        m = copy.deepcopy(model)
        if name == "channels_last":
            m = m.to(memory_format=torch.channels_last)
        opt = build_optimizer(cfg, m)
        for g in opt.param_groups:
            if name == "foreach":
                g["foreach"] = True
            if name == "fused":
                g["fused"] = True
        variants[name] = (m, opt, [q for q in m.parameters() if q.requires_grad])
    times = {k: {"total": [], "forward": [], "backward": [], "optimizer": []} for k in variants}
    losses = {k: [] for k in variants}
    for images, targets in batches:
        for name, (m, opt, params) in variants.items():  # interleaved
            t0 = time.perf_counter()
            parts = m(images, targets)
            total = sum(parts[k] for k in sorted(parts))
            losses[name].append(total.item())
            t1 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            total.backward()
            t2 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(params, cfg.solver.clip_grad_norm)
            opt.step()
            t3 = time.perf_counter()
            spans = {"total": t3 - t0, "forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2}
            for key, value in spans.items():
                times[name][key].append(value)
    ref = losses["trainer"]
    for name in variants:
        med = {k: 1000 * statistics.median(v[2:]) for k, v in times[name].items()}
        rel = max(abs(a - b) / abs(b) for a, b in zip(losses[name], ref))
        print(f"{name:14s} {8000 / med['total']:6.2f} img/s  fwd {med['forward']:6.1f}  "
              f"bwd {med['backward']:6.1f}  opt {med['optimizer']:5.1f} ms   "
              f"max rel loss diff vs trainer {rel:.1e}")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
