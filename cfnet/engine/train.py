"""Training: ``cfnet train`` and :func:`train`, single process or under ``torchrun`` (DDP).

    cfnet train --preset shapes-tiny --data data/shapes --out runs/tiny [--max-iters N] [--resume]
    torchrun --standalone --nproc_per_node 2 -m cfnet train --preset shapes-tiny --data ... --out ...

What the loop does and why:

* **Loss** is Eq. 1 as the model returns it: ``L = L_mask + L_cate + λ·L_sem`` (the model applies the
  weights; the trainer sums the terms).
* **Optimiser, schedule, gradient clipping, AMP** (:mod:`cfnet.engine.solver`): SGD with momentum
  or AdamW, no weight decay on biases and norm affines; linear warm-up, then ×``gamma`` at each
  of ``steps``, recomputed from the config on resume; clipping by global norm, whose value is
  checked even when clipping is off; AMP on CUDA only, CPU runs in float32.
* **Data order** (:mod:`cfnet.data.sampler`) is a pure function of ``(seed, iteration)``, sharded
  so that the union of the ranks' batches is the single-process batch, and every sample's
  augmentation is seeded from ``(seed, epoch, index)``: resuming at iteration ``i`` continues the
  stream exactly, whatever the number of loader workers.
* **DDP** under torchrun (:mod:`cfnet.engine.runtime`): NCCL on CUDA, gloo on CPU; each rank takes
  ``batch_size / world_size`` images; gradients are averaged by DDP; SyncBatchNorm for
  ``backbone.norm=bn`` on CUDA. Only rank 0 writes files and shows the bar.
* **Outputs** in ``RUN/``: ``config.yaml`` (resolved config), ``metrics.jsonl`` (one JSON line per
  ``log_period``: iteration, lr, loss and each loss term averaged over the period and the ranks,
  seconds per iteration, data time, ETA), ``last.pt`` every ``checkpoint_period`` iterations and at
  the end, ``model_final.pt`` (weights + config, no optimiser state) at the end, and if the data
  folder has a ``val/`` split, ``eval/`` + ``eval.json`` from :func:`cfnet.engine.evaluate.evaluate`.
* **Divergence**: a NaN / infinite loss term or gradient norm stops training with
  :class:`TrainingDiverged`, naming the iteration and the loss terms; the bad state is never
  saved, so ``last.pt`` stays the last good checkpoint. Parameters are checked for finiteness
  before every save as well.
* ``--resume`` continues from ``RUN/last.pt``: weights, optimiser, scheduler, scaler, RNG states
  and the data position, so 2 + 2 iterations equal 4 straight. The model part of the config must
  match the checkpoint's; other differences are reported (``solver.max_iters`` may grow freely).
  A ``last.pt`` already at ``solver.max_iters`` trains no further but writes what a crash after
  it may have cost (``model_final.pt``, the final evaluation); a weights-only file (a final or
  exported checkpoint) is refused, as it holds no optimiser state.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cfnet.checkpoint import (
    CheckpointError,
    check_state_dict,
    read_checkpoint,
    remove_stale_temp_files,
    save_checkpoint,
    set_rng_state,
)
from cfnet.config import Config, ConfigError, apply_overrides, get_config, save_config, validate
from cfnet.data.panoptic import PanopticDataset, collate, resolve_splits
from cfnet.data.sampler import InfiniteShardSampler, SeededSamples
from cfnet.data.transforms import build_transforms
from cfnet.engine.evaluate import evaluate, format_table
from cfnet.engine.runtime import all_reduce_mean, dist_env, process_group, resolve_device, to_device
from cfnet.engine.solver import build_optimizer, build_scheduler
from cfnet.model import build_model

LAST = "last.pt"
FINAL = "model_final.pt"
METRICS = "metrics.jsonl"
# Config keys that may differ between a run and its resumption without a warning.
_RESUME_FREE = {"solver.max_iters", "solver.checkpoint_period", "solver.log_period", "data.num_workers"}


class TrainingDiverged(FloatingPointError):
    """A loss term or the gradient norm became NaN / infinite; the message says where."""


# ----------------------------------------------------------------------------------------------
# helpers


def _all_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def _config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        full = prefix + k
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _config_diff(va, vb, full + ".")
        elif va != vb:
            keys.append(full)
    return keys


# ----------------------------------------------------------------------------------------------
# the loop


def train(
    cfg: Config,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
    evaluate_val: bool = True,
    check_data: bool = True,
) -> dict[str, Any]:
    """Train ``cfg`` on ``data_dir`` (``train/`` [+ ``val/``] or one split folder) into ``out_dir``.

    Works in a notebook (single process) and under torchrun (DDP; the process group is set up here
    when ``WORLD_SIZE > 1`` and torn down at the end). ``callback`` gets every metrics record on
    rank 0, e.g. for a live plot. Returns ``{"iteration", "last_checkpoint", "final_checkpoint",
    "metrics" (the last record), "eval" (val metrics or None), "out_dir"}``.
    Raises :class:`TrainingDiverged` on a non-finite loss or gradient (``last.pt`` is left as is).
    With ``check_data`` the training split (and the val split, if it will be evaluated) is checked
    cheaply before the first iteration: files there, header sizes, nothing listed twice.
    """
    cfg = validate(cfg)
    out_dir = Path(out_dir)
    with process_group(device) as (rank, world, local_rank):
        return _train(cfg, data_dir, out_dir, rank, world, local_rank, resume, device, progress, callback,
                      evaluate_val, check_data)


def _train(cfg, data_dir, out_dir, rank, world, local_rank, resume, device, progress, callback,
           evaluate_val, check_data=True) -> dict[str, Any]:
    s = cfg.solver
    main_proc = rank == 0
    device = resolve_device(device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if s.batch_size % world:
        raise ConfigError(
            f"config key 'solver.batch_size': the total batch {s.batch_size} is not divisible by the "
            f"{world} processes"
        )
    train_dir, val_dir = resolve_splits(data_dir)
    last_path, final_path = out_dir / LAST, out_dir / FINAL

    ckpt = None
    if resume:
        if last_path.is_file():
            ckpt = read_checkpoint(last_path)
            _check_training_state(ckpt, last_path)
            _check_resume_config(cfg, ckpt, last_path, main_proc)
        elif main_proc:
            print(f"--resume: {last_path} does not exist yet; starting from iteration 0", file=sys.stderr)
    elif last_path.exists():
        raise FileExistsError(
            f"{out_dir} already holds a run ({last_path}); pass --resume to continue it, or choose "
            "another --out"
        )
    if main_proc:
        remove_stale_temp_files(out_dir)  # left by a write that was killed (atomic_save's temp names)

    # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % (1 << 32))
    model = build_model(cfg).to(device)
    categories = model.categories
    if ckpt is not None:
        check_state_dict(model.state_dict(), ckpt["model"], last_path)
        model.load_state_dict(ckpt["model"])
    model.train()
    if world > 1 and device.type == "cuda" and cfg.model.backbone.norm == "bn":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net: torch.nn.Module = model
    if world > 1:
        # Some FPN levels / branches may not reach the loss for every config (e.g. fewer grids
        # than pyramid levels), hence find_unused_parameters.
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )

    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    use_amp = s.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
    start_iter = 0
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(ckpt["scaler"])
        start_iter = int(ckpt["iteration"])
        set_rng_state(ckpt["rng"])
        del ckpt

    dataset = PanopticDataset(train_dir, categories=categories, transforms=build_transforms(cfg, train=True))
    if len(dataset) == 0:
        raise FileNotFoundError(f"--data {train_dir}: the split holds no images")
    if check_data:  # a bad item found now, not when the sampler first draws it
        dataset.check_files(progress=progress and main_proc)
        if evaluate_val and val_dir is not None:
            PanopticDataset(val_dir, categories=categories).check_files(progress=progress and main_proc)
    sampler = InfiniteShardSampler(
        len(dataset), seed=cfg.seed, total_batch=s.batch_size, rank=rank, world_size=world,
        start_iter=start_iter,
    )
    loader = DataLoader(
        SeededSamples(dataset, cfg.seed),
        batch_size=sampler.per_rank,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )

    if main_proc:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
        _trim_metrics(out_dir / METRICS, start_iter if start_iter else None)

    result: dict[str, Any] = {
        "iteration": start_iter,
        "last_checkpoint": str(last_path) if last_path.is_file() else None,
        "final_checkpoint": None,
        "metrics": None,
        "eval": None,
        "out_dir": str(out_dir),
    }
    if start_iter >= s.max_iters:
        # A crash after the last last.pt may have cost model_final.pt and the final evaluation.
        write_final = _final_missing(final_path, start_iter)
        stale_eval = write_final or _older(out_dir / "eval.json", final_path)
        run_eval = evaluate_val and val_dir is not None and stale_eval
        if main_proc:
            where = f"{last_path} is at iteration {start_iter} >= solver.max_iters {s.max_iters}"
            if write_final or run_eval:
                todo = [final_path.name] if write_final else []
                todo += ["the final evaluation"] if run_eval else []
                print(f"{where}: training is done; writing what the run is missing: {' and '.join(todo)}")
            else:
                print(f"{where}: done already")
        if write_final or run_eval:
            _finish(model, cfg, out_dir, final_path, start_iter, val_dir if run_eval else None, device,
                    progress, main_proc, write_final, result)
        if world > 1:
            dist.barrier()
        return result

    bar = None
    if main_proc and progress:
        bar = tqdm(total=s.max_iters, initial=start_iter, desc="train", dynamic_ncols=True)
    params = [p for p in model.parameters() if p.requires_grad]
    max_norm = s.clip_grad_norm if s.clip_grad_norm is not None else math.inf
    autocast = (
        (lambda: torch.autocast(device_type="cuda", dtype=amp_dtype)) if use_amp else contextlib.nullcontext
    )
    last_good = (start_iter if result["last_checkpoint"] else None)
    period: dict[str, float] = {}
    period_n, period_time, period_data = 0, 0.0, 0.0
    run_start = time.perf_counter()
    data_iter = iter(loader)
    try:
        for it in range(start_iter, s.max_iters):
            t0 = time.perf_counter()
            images, targets = next(data_iter)
            images = [im.to(device, non_blocking=True) for im in images]
            targets = [to_device(t, device) for t in targets]
            t_data = time.perf_counter() - t0
            lr = optimizer.param_groups[0]["lr"]

            with autocast():
                losses = net(images, targets)
            names = sorted(losses)
            total = sum(losses[k] for k in names)
            # One all-reduce gives the cross-rank average for logging and, since a NaN on any rank
            # poisons the sum, a divergence decision that every rank takes together.
            values = torch.stack([losses[k].detach().float() for k in names] + [total.detach().float()])
            vals = all_reduce_mean(values, world).tolist()
            if not all(math.isfinite(v) for v in vals):
                terms = ", ".join(f"{k}={v:.4g}" for k, v in zip(names + ["total"], vals))
                raise TrainingDiverged(
                    f"training stopped: non-finite loss at iteration {it + 1} ({terms}); "
                    + _kept(last_path, last_good)
                )

            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            if not math.isfinite(grad_norm) and not scaler.is_enabled():
                # (with an fp16 GradScaler an inf gradient is routine: the scaler skips the step)
                terms = ", ".join(f"{k}={v:.4g}" for k, v in zip(names + ["total"], vals))
                raise TrainingDiverged(
                    f"training stopped: non-finite gradient norm at iteration {it + 1} (losses {terms}); "
                    + _kept(last_path, last_good)
                )
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()

            done = it + 1
            dt = time.perf_counter() - t0
            for k, v in zip(names + ["loss"], vals):
                period[k] = period.get(k, 0.0) + v
            period_n, period_time, period_data = period_n + 1, period_time + dt, period_data + t_data
            if bar is not None:
                bar.set_postfix(loss=f"{vals[-1]:.3f}", lr=f"{lr:.2e}", refresh=False)
                bar.update(1)

            if done % s.log_period == 0 or done == s.max_iters:
                sec = period_time / period_n
                record = {
                    "iteration": done,
                    "lr": lr,
                    **{k: v / period_n for k, v in period.items()},
                    "grad_norm": grad_norm,
                    "time": sec,
                    "data_time": period_data / period_n,
                    "elapsed": time.perf_counter() - run_start,
                    "eta_seconds": sec * (s.max_iters - done),
                }
                period, period_n, period_time, period_data = {}, 0, 0.0, 0.0
                result["metrics"] = record
                if main_proc:
                    with open(out_dir / METRICS, "a") as f:
                        f.write(json.dumps(record) + "\n")
                    if callback is not None:
                        callback(record)

            if done % s.checkpoint_period == 0 or done == s.max_iters:
                if not _all_finite(model):
                    raise TrainingDiverged(
                        f"training stopped: parameters became non-finite at iteration {done}; "
                        + _kept(last_path, last_good)
                    )
                if main_proc:
                    save_checkpoint(
                        last_path, model=model, cfg=cfg, optimizer=optimizer, scheduler=scheduler,
                        scaler=scaler, iteration=done,
                        extra={"sampler_position": done * s.batch_size, "world_size": world},
                    )
                last_good = done
            result["iteration"] = done
    finally:
        if bar is not None:
            bar.close()
        del data_iter

    result["last_checkpoint"] = str(last_path)
    _finish(model, cfg, out_dir, final_path, result["iteration"], val_dir if evaluate_val else None, device,
            progress, main_proc, True, result)
    if world > 1:
        dist.barrier()
    return result


def _finish(model, cfg, out_dir, final_path, iteration, val_dir, device, progress, main_proc, write_final,
            result) -> None:
    """The end of a run: ``model_final.pt`` (weights + config) and the evaluation on ``val_dir``."""
    if not main_proc:
        return
    if write_final:
        save_checkpoint(final_path, model=model, cfg=cfg, iteration=iteration)
    result["final_checkpoint"] = str(final_path)
    if val_dir is not None:
        model.eval()
        metrics = evaluate(  # (the split was checked when the run started)
            model, val_dir, out_dir / "eval", device=str(device), progress=progress, check_data=False
        )
        (out_dir / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
        result["eval"] = metrics


def _final_missing(final_path: Path, iteration: int) -> bool:
    """True unless ``final_path`` is a readable checkpoint of ``iteration``."""
    if not final_path.is_file():
        return True
    try:
        return int(read_checkpoint(final_path).get("iteration", -1)) != iteration
    except CheckpointError:
        return True


def _older(path: Path, than: Path) -> bool:
    """True when ``path`` is missing or older than ``than`` (a stale evaluation)."""
    if not path.is_file():
        return True
    return than.is_file() and path.stat().st_mtime_ns < than.stat().st_mtime_ns


def _check_training_state(ckpt: dict, path: Path) -> None:
    missing = [k for k in ("optimizer", "scheduler", "rng") if ckpt.get(k) is None]
    if missing:
        raise CheckpointError(
            f"--resume: {path} holds weights only and no optimiser state ({', '.join(missing)} missing): "
            "it is a final or exported checkpoint, not a training state, so the run cannot continue from it; "
            "start a new run with another --out"
        )


def _kept(last_path: Path, last_good: int | None) -> str:
    if last_good is None:
        return "no checkpoint had been written yet"
    return f"the last good checkpoint {last_path} (iteration {last_good}) was kept"


def _trim_metrics(path: Path, keep_upto: int | None) -> None:
    """Fresh run: empty the log. Resume at i: drop records after i (they belong to the lost tail)."""
    if keep_upto is None or not path.is_file():
        path.write_text("")
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("iteration", 0) <= keep_upto:
                kept.append(line)
        except json.JSONDecodeError:
            continue
    path.write_text("".join(line + "\n" for line in kept))


def _check_resume_config(cfg: Config, ckpt: dict, path: Path, main_proc: bool) -> None:
    # Fill keys added since the checkpoint was written with their defaults (a run saved before
    # model.backbone.name existed was a ResNet run), so only real differences count.
    try:
        saved = Config.from_dict(ckpt["config"]).to_dict()
    except ValueError as e:
        raise CheckpointError(f"--resume: {path} holds a config this version cannot read ({e})") from None
    diff = _config_diff(cfg.to_dict(), saved)
    model_diff = [k for k in diff if k.startswith("model.")]
    if model_diff:
        raise CheckpointError(
            f"--resume: the model config differs from the one in {path} ({', '.join(model_diff)}); "
            "resume with the same preset and model overrides"
        )
    other = [k for k in diff if k not in _RESUME_FREE]
    if other and main_proc:
        print(f"--resume: config differs from {path} in {', '.join(other)} (new values used)",
              file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, help="preset name (see cfnet/presets) or a YAML path")
    parser.add_argument("--data", required=True, help="folder with train/ [+ val/] splits, or one split")
    parser.add_argument("--out", required=True, help="run folder (config.yaml, metrics.jsonl, last.pt, ...)")
    parser.add_argument("--max-iters", type=int, default=None, help="override solver.max_iters")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation on DIR/val at the end")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-check-data",
        action="store_true",
        help="skip the up-front check of the splits' files (for very large data sets)",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def main(args: argparse.Namespace) -> int:
    try:
        cfg = get_config(args.preset, args.overrides)
        if args.max_iters is not None:
            if args.max_iters <= 0:
                raise ConfigError(f"--max-iters: expected a positive integer, got {args.max_iters}")
            apply_overrides(cfg, [f"solver.max_iters={args.max_iters}"])
        result = train(
            cfg, args.data, args.out, resume=args.resume, device=args.device,
            progress=not args.no_progress, evaluate_val=not args.no_eval, check_data=not args.no_check_data,
        )
    except TrainingDiverged as e:
        if dist_env().rank == 0:
            print(f"cfnet train: {e}", file=sys.stderr)
        return 1
    except (ConfigError, CheckpointError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"cfnet train: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only run folder, ...: one line (the last good last.pt is kept)
        print(f"cfnet train: {e}", file=sys.stderr)
        return 1
    if dist_env().rank == 0:
        print(f"done: iteration {result['iteration']}, checkpoints in {result['out_dir']}")
        if result["eval"]:
            print(format_table(result["eval"]))
    return 0
