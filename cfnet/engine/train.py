"""Training: ``cfnet train`` and :func:`train`, single process or under ``torchrun`` (DDP).

    cfnet train --preset shapes-tiny --data data/shapes --out runs/tiny [--max-iters N] [--resume]
    torchrun --standalone --nproc_per_node 2 -m cfnet train --preset shapes-tiny --data ... --out ...

:func:`train` sets a run up from plain pieces — the device and process group
(:mod:`cfnet.engine.runtime`), the data order (:mod:`cfnet.data.sampler`), the optimiser,
schedule and AMP (:mod:`cfnet.engine.solver`) — then loops :func:`train_step` over the
iterations, logging every ``log_period`` and checkpointing every ``checkpoint_period``.

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
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cfnet.categories import Categories
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
from cfnet.engine.runtime import (
    DistEnv,
    all_reduce_mean,
    dist_env,
    distribute,
    process_group,
    resolve_device,
    to_device,
)
from cfnet.engine.solver import Solver, build_solver
from cfnet.model import build_model

LAST = "last.pt"
FINAL = "model_final.pt"
METRICS = "metrics.jsonl"
# Config keys that may differ between a run and its resumption without a warning.
_RESUME_FREE = {"solver.max_iters", "solver.checkpoint_period", "solver.log_period", "data.num_workers"}


class TrainingDiverged(FloatingPointError):
    """A loss term or the gradient norm became NaN / infinite; the message says where."""


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
    with process_group(device) as env:
        return _train(cfg, data_dir, Path(out_dir), env, resume, device, progress, callback, evaluate_val,
                      check_data)


def _train(cfg: Config, data_dir: str | Path, out_dir: Path, env: DistEnv, resume: bool,
           device: str | torch.device | None, progress: bool,
           callback: Callable[[dict[str, Any]], None] | None, evaluate_val: bool,
           check_data: bool) -> dict[str, Any]:  # fmt: skip
    """One rank's run: set-up, then the loop, or for a finished run only what it is missing.

    The set-up's order matters for exact resumes: the RNGs are seeded before the model is built
    (identical initial weights on every rank) and, on resume, restored after it."""
    s = cfg.solver
    device = resolve_device(device, env.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if s.batch_size % env.world_size:
        raise ConfigError(
            f"config key 'solver.batch_size': the total batch {s.batch_size} is not divisible by the "
            f"{env.world_size} processes"
        )
    run = _Run(cfg, out_dir, device, env.rank, env.world_size, progress)
    train_dir, val_dir = resolve_splits(data_dir)
    eval_dir = val_dir if evaluate_val else None
    ckpt = _training_state(run, resume)
    if run.main_proc:
        remove_stale_temp_files(out_dir)  # left by a write that was killed (atomic_save's temp names)

    # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % (1 << 32))
    model = build_model(cfg).to(device)
    if ckpt is not None:
        check_state_dict(model.state_dict(), ckpt["model"], run.last_path)
        model.load_state_dict(ckpt["model"])
    model.train()
    model, net = distribute(model, device, env.world_size, sync_bn=cfg.model.backbone.norm == "bn")
    solver = build_solver(cfg, model, device)
    start_iter = _restore(solver, ckpt) if ckpt is not None else 0
    del ckpt
    loader = _loader(run, _training_set(run, train_dir, eval_dir, model.categories, check_data), start_iter)

    if run.main_proc:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
        _trim_metrics(out_dir / METRICS, start_iter if start_iter else None)
    result: dict[str, Any] = {
        "iteration": start_iter,
        "last_checkpoint": str(run.last_path) if run.last_path.is_file() else None,
        "final_checkpoint": None,
        "metrics": None,
        "eval": None,
        "out_dir": str(out_dir),
    }
    if start_iter < s.max_iters:
        _loop(run, model, net, solver, loader, start_iter, callback, result)
        result["last_checkpoint"] = str(run.last_path)
        _finish(run, model, result["iteration"], eval_dir, True, result)
    else:
        _catch_up(run, model, start_iter, eval_dir, result)
    if env.world_size > 1:
        dist.barrier()
    return result


def _loop(run: _Run, model: torch.nn.Module, net: torch.nn.Module, solver: Solver, loader: DataLoader,
          start_iter: int, callback: Callable[[dict[str, Any]], None] | None,
          result: dict[str, Any]) -> None:  # fmt: skip
    """Iterations ``start_iter + 1 .. solver.max_iters``: a :func:`train_step` each, a metrics
    record every ``log_period`` and ``last.pt`` every ``checkpoint_period`` (and both at the end)."""
    s = run.cfg.solver
    bar = None
    if run.main_proc and run.progress:
        bar = tqdm(total=s.max_iters, initial=start_iter, desc="train", dynamic_ncols=True)
    last_good = start_iter if result["last_checkpoint"] else None
    log = _MetricsLog(run.out_dir / METRICS if run.main_proc else None, callback if run.main_proc else None,
                      s.max_iters)  # fmt: skip
    data_iter = iter(loader)
    try:
        for it in range(start_iter, s.max_iters):
            t0 = time.perf_counter()
            images, targets = next(data_iter)
            images = [im.to(run.device, non_blocking=True) for im in images]
            targets = [to_device(t, run.device) for t in targets]
            t_data = time.perf_counter() - t0
            lr = solver.optimizer.param_groups[0]["lr"]
            try:
                losses, grad_norm = train_step(net, solver, images, targets, world_size=run.world_size,
                                               iteration=it + 1)  # fmt: skip
            except TrainingDiverged as e:  # the step cannot know which checkpoint survives
                raise TrainingDiverged(f"{e}; {_kept(run.last_path, last_good)}") from None

            done = it + 1
            log.add(losses, time.perf_counter() - t0, t_data)
            if bar is not None:
                bar.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{lr:.2e}", refresh=False)
                bar.update(1)
            if done % s.log_period == 0 or done == s.max_iters:
                result["metrics"] = log.write(done, lr, grad_norm)
            if done % s.checkpoint_period == 0 or done == s.max_iters:
                _save_last(run, model, solver, done, last_good)
                last_good = done
            result["iteration"] = done
    finally:
        if bar is not None:
            bar.close()
        del data_iter


def train_step(
    net: torch.nn.Module,
    solver: Solver,
    images: list[torch.Tensor],
    targets: list[dict[str, Any]],
    *,
    world_size: int = 1,
    iteration: int,
) -> tuple[dict[str, float], float]:
    """One update on one batch (this rank's part of it): Eq. 1's loss, backward, clip, step, schedule.

    Returns each loss term and their sum (``"loss"``), averaged over the ranks, and the gradient
    norm before clipping. A non-finite loss raises :class:`TrainingDiverged` before any update; a
    non-finite gradient norm does too, unless an fp16 GradScaler runs (it skips such steps itself).
    ``iteration`` (1-based) only names the step in that message.
    """
    with solver.autocast():
        losses = net(images, targets)
    names = sorted(losses)
    total = sum(losses[k] for k in names)
    # One all-reduce gives the cross-rank average for logging and, since a NaN on any rank
    # poisons the sum, a divergence decision that every rank takes together.
    values = torch.stack([losses[k].detach().float() for k in names] + [total.detach().float()])
    vals = all_reduce_mean(values, world_size).tolist()
    if not all(math.isfinite(v) for v in vals):
        raise TrainingDiverged(
            f"training stopped: non-finite loss at iteration {iteration} ({_terms(names, vals)})"
        )

    solver.optimizer.zero_grad(set_to_none=True)
    solver.scaler.scale(total).backward()
    solver.scaler.unscale_(solver.optimizer)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(solver.params, solver.max_norm))
    if not math.isfinite(grad_norm) and not solver.scaler.is_enabled():
        # (with an fp16 GradScaler an inf gradient is routine: the scaler skips the step)
        terms = _terms(names, vals)
        raise TrainingDiverged(
            f"training stopped: non-finite gradient norm at iteration {iteration} (losses {terms})"
        )
    solver.scaler.step(solver.optimizer)
    solver.scaler.update()
    solver.scheduler.step()
    return dict(zip([*names, "loss"], vals)), grad_norm


def _terms(names: list[str], vals: list[float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in zip(names + ["total"], vals))


# ----------------------------------------------------------------------------------------------
# set-up


@dataclass(frozen=True)
class _Run:
    """What the set-up, logging and checkpoint helpers share about one run (on this rank)."""

    cfg: Config
    out_dir: Path
    device: torch.device
    rank: int
    world_size: int
    progress: bool

    @property
    def main_proc(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    @property
    def last_path(self) -> Path:
        return self.out_dir / LAST

    @property
    def final_path(self) -> Path:
        return self.out_dir / FINAL


def _training_state(run: _Run, resume: bool) -> dict | None:
    """The checkpoint to resume from, or None to start at iteration 0.

    Without ``resume`` a folder that already holds a run is refused rather than overwritten.
    """
    last_path = run.last_path
    if resume:
        if last_path.is_file():
            ckpt = read_checkpoint(last_path)
            _check_training_state(ckpt, last_path)
            _check_resume_config(run.cfg, ckpt, last_path, run.main_proc)
            return ckpt
        if run.main_proc:
            print(f"--resume: {last_path} does not exist yet; starting from iteration 0", file=sys.stderr)
        return None
    if last_path.exists():
        raise FileExistsError(
            f"{run.out_dir} already holds a run ({last_path}); pass --resume to continue it, or choose "
            "another --out"
        )
    return None


def _restore(solver: Solver, ckpt: dict) -> int:
    """Put the optimiser, schedule, scaler and RNGs back as ``ckpt`` saved them; returns its iteration."""
    solver.optimizer.load_state_dict(ckpt["optimizer"])
    solver.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler") and solver.scaler.is_enabled():
        solver.scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    return int(ckpt["iteration"])


def _training_set(run: _Run, train_dir: Path, eval_dir: Path | None, categories: Categories,
                  check_data: bool) -> PanopticDataset:  # fmt: skip
    """The training split with its augmentation; with ``check_data`` a bad item (of it or of the
    split evaluated at the end) is found now, not when the sampler first draws it."""
    transforms = build_transforms(run.cfg, train=True)
    dataset = PanopticDataset(train_dir, categories=categories, transforms=transforms)
    if len(dataset) == 0:
        raise FileNotFoundError(f"--data {train_dir}: the split holds no images")
    if check_data:
        progress = run.progress and run.main_proc
        dataset.check_files(progress=progress)
        if eval_dir is not None:
            PanopticDataset(eval_dir, categories=categories).check_files(progress=progress)
    return dataset


def _loader(run: _Run, dataset: PanopticDataset, start_iter: int) -> DataLoader:
    """This rank's endless share of the data stream, from ``start_iter`` on."""
    s = run.cfg.solver
    sampler = InfiniteShardSampler(
        len(dataset), seed=run.cfg.seed, total_batch=s.batch_size, rank=run.rank, world_size=run.world_size,
        start_iter=start_iter,
    )  # fmt: skip
    return DataLoader(
        SeededSamples(dataset, run.cfg.seed),
        batch_size=sampler.per_rank,
        sampler=sampler,
        num_workers=run.cfg.data.num_workers,
        collate_fn=collate,
        pin_memory=run.device.type == "cuda",
    )


def _check_training_state(ckpt: dict, path: Path) -> None:
    missing = [k for k in ("optimizer", "scheduler", "rng") if ckpt.get(k) is None]
    if missing:
        raise CheckpointError(
            f"--resume: {path} holds weights only and no optimiser state ({', '.join(missing)} missing): "
            "it is a final or exported checkpoint, not a training state, so the run cannot continue from it; "
            "start a new run with another --out"
        )


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
# logging and checkpoints


class _MetricsLog:
    """Sums over one ``log_period``, written as one averaged ``metrics.jsonl`` record.

    ``path`` and ``callback`` are None on the ranks other than 0, which only average.
    """

    def __init__(self, path: Path | None, callback: Callable[[dict[str, Any]], None] | None, max_iters: int):
        self.path, self.callback, self.max_iters = path, callback, max_iters
        self.start = time.perf_counter()
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.n, self.seconds, self.data_seconds = 0, 0.0, 0.0

    def add(self, losses: dict[str, float], seconds: float, data_seconds: float) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.n += 1
        self.seconds += seconds
        self.data_seconds += data_seconds

    def write(self, iteration: int, lr: float, grad_norm: float) -> dict[str, Any]:
        sec = self.seconds / self.n
        record = {
            "iteration": iteration,
            "lr": lr,
            **{k: v / self.n for k, v in self.sums.items()},
            "grad_norm": grad_norm,
            "time": sec,
            "data_time": self.data_seconds / self.n,
            "elapsed": time.perf_counter() - self.start,
            "eta_seconds": sec * (self.max_iters - iteration),
        }
        self._reset()
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if self.callback is not None:
            self.callback(record)
        return record


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


def _save_last(run: _Run, model: torch.nn.Module, solver: Solver, iteration: int,
               last_good: int | None) -> None:  # fmt: skip
    """``last.pt`` at ``iteration`` (rank 0), unless the weights are no longer finite."""
    if not _all_finite(model):
        raise TrainingDiverged(
            f"training stopped: parameters became non-finite at iteration {iteration}; "
            + _kept(run.last_path, last_good)
        )
    if run.main_proc:
        save_checkpoint(
            run.last_path, model=model, cfg=run.cfg, optimizer=solver.optimizer, scheduler=solver.scheduler,
            scaler=solver.scaler, iteration=iteration,
            extra={"sampler_position": iteration * run.cfg.solver.batch_size, "world_size": run.world_size},
        )  # fmt: skip


def _all_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def _kept(last_path: Path, last_good: int | None) -> str:
    if last_good is None:
        return "no checkpoint had been written yet"
    return f"the last good checkpoint {last_path} (iteration {last_good}) was kept"


def _finish(run: _Run, model: torch.nn.Module, iteration: int, eval_dir: Path | None, write_final: bool,
            result: dict[str, Any]) -> None:  # fmt: skip
    """The end of a run: ``model_final.pt`` (weights + config) and the evaluation on ``eval_dir``."""
    if not run.main_proc:
        return
    if write_final:
        save_checkpoint(run.final_path, model=model, cfg=run.cfg, iteration=iteration)
    result["final_checkpoint"] = str(run.final_path)
    if eval_dir is not None:
        model.eval()
        metrics = evaluate(  # (the split was checked when the run started)
            model, eval_dir, run.out_dir / "eval", device=str(run.device), progress=run.progress,
            check_data=False,
        )  # fmt: skip
        (run.out_dir / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
        result["eval"] = metrics


def _catch_up(run: _Run, model: torch.nn.Module, iteration: int, eval_dir: Path | None,
              result: dict[str, Any]) -> None:  # fmt: skip
    """A run resumed at ``solver.max_iters``: write what a crash after its last ``last.pt`` may have
    cost (``model_final.pt``, the final evaluation), and nothing else."""
    write_final = _final_missing(run.final_path, iteration)
    stale_eval = write_final or _older(run.out_dir / "eval.json", run.final_path)
    run_eval = eval_dir is not None and stale_eval
    if run.main_proc:
        where = f"{run.last_path} is at iteration {iteration} >= solver.max_iters {run.cfg.solver.max_iters}"
        if write_final or run_eval:
            todo = [run.final_path.name] if write_final else []
            todo += ["the final evaluation"] if run_eval else []
            print(f"{where}: training is done; writing what the run is missing: {' and '.join(todo)}")
        else:
            print(f"{where}: done already")
    if write_final or run_eval:
        _finish(run, model, iteration, eval_dir if run_eval else None, write_final, result)


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
