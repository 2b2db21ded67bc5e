"""``cfnet export``: turn a training run into a release checkpoint and its card.

A release checkpoint keeps what inference needs (config, categories, weights) and drops the
optimiser, scheduler and RNG states; with ``--half`` the floating-point weights are stored in
float16, which halves the file (the shipped model must stay under 20 MB) and is loaded back into
the float32 model by :func:`cfnet.checkpoint.load_checkpoint` (``load_state_dict`` casts).

The card (``<out>.json``) records how the weights were made: the config, the data seed and size,
iterations, wall time of the run, the machine, and the evaluation metrics of ``RUN/eval.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from cfnet.checkpoint import atomic_save, check_finite_weights, read_checkpoint
from cfnet.config import Config

__all__ = ["export_run"]


def _run_wall_time(run: Path) -> float | None:
    lines = [ln for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    return json.loads(lines[-1]).get("elapsed") if lines else None


def _machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu or platform.processor()} ({os.cpu_count()} cores), torch {torch.__version__}"


def export_run(
    run: str | Path,
    out: str | Path,
    *,
    half: bool = True,
    data_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``out`` (release checkpoint) and ``out.with_suffix('.json')`` (card) from run folder ``run``."""
    run, out = Path(run), Path(out)
    final = run / "model_final.pt"
    if not final.is_file():
        raise FileNotFoundError(f"{final}: no final checkpoint in run folder {run} (did training finish?)")
    data = read_checkpoint(final)
    check_finite_weights(data["model"], final)
    cfg = Config.from_dict(data["config"])
    release = {
        key: data[key] for key in ("format", "version", "config", "categories", "iteration")
    }
    release["model"] = {
        k: (v.half() if half and v.is_floating_point() else v) for k, v in data["model"].items()
    }
    release.update(optimizer=None, scheduler=None, scaler=None, rng=None, extra={"source_run": run.name})
    atomic_save(release, out)

    eval_path = run / "eval.json"
    card = {
        "checkpoint": out.name,
        "preset": cfg.name,
        "iterations": data["iteration"],
        "batch_size": cfg.solver.batch_size,
        "wall_time_seconds": _run_wall_time(run),
        "machine": _machine(),
        "weights_dtype": "float16" if half else "float32",
        "file_size_bytes": out.stat().st_size,
        "data": data_info or {},
        "metrics": json.loads(eval_path.read_text()) if eval_path.is_file() else None,
        "config": cfg.to_dict(),
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="training run folder (holds model_final.pt, eval.json)")
    parser.add_argument("--out", required=True, help="release checkpoint (.pt); card beside it")
    parser.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16)")
    parser.add_argument("--data-seed", type=int, default=None, help="seed the shapes data was generated with")
    parser.add_argument("--data-size", type=int, default=None, help="image size of the shapes data")
    parser.add_argument("--num-train", type=int, default=None, help="training images")
    parser.add_argument("--num-val", type=int, default=None, help="validation images (the card's metrics)")


def main(args: argparse.Namespace) -> int:
    info = {
        k: v
        for k, v in (
            ("seed", args.data_seed),
            ("size", args.data_size),
            ("num_train", args.num_train),
            ("num_val", args.num_val),
        )
        if v is not None
    }
    from cfnet.checkpoint import CheckpointError

    try:
        card = export_run(args.run, args.out, half=not args.float32, data_info=info)
    except (CheckpointError, OSError, ValueError) as e:
        print(f"cfnet export: {e}", file=sys.stderr)
        return 2
    m = card["metrics"] or {}
    print(f"wrote {args.out} ({card['file_size_bytes'] / 1e6:.1f} MB) and its card")
    if m:
        keys = ("PQ", "PQ_th", "PQ_st", "mIoU", "mask_AP")
        print("  " + "  ".join(f"{k} {m[k]:.1f}" for k in keys if m.get(k) is not None))
    return 0
