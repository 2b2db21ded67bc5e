"""The seeded ablation study and ``cfnet ablate run``: every (run, seed) of the tables, cached.

    cfnet ablate run [--tables 4,5,6,7,fn,controls,position] [--seeds 0,1,2] [--data DIR] [--results DIR]
                     [--runs-dir DIR] [--iters N] [--only RUN,...] [--device cpu|cuda]

One protocol for every run (:data:`STUDY`): the same data set, preset, iterations and schedule;
nothing is tuned per configuration. A seed changes initialisation and data order only: the data
set is generated once, from its own fixed seed. Tables 4 and 6 (``seeds="all"`` in
:data:`cfnet.ablation.TABLES`) run every requested seed; the other tables run the first requested
seed (``--all-seeds`` runs every seed everywhere).

Each finished run is a JSON file in ``--results`` written the moment it finishes (see
:func:`cfnet.ablation.run_ablation`), so an interrupted study resumes where it stopped, and its
final weights stay in ``--runs-dir/checkpoints`` so that diagnostics
(:func:`cfnet.diagnostics.analyze`) can be added to a result that lacks them without retraining.

Why this protocol (measured, see docs/ablations.md): the study runs on the ``hard`` variant of
``shapes`` because on the standard set every configuration ties (the issue's calibration: PQ
68.8–69.2 with and without any position module or semantic module) — that set does not need
either mechanism at 128 px. 2000 iterations is the ``shapes-tiny`` preset's own schedule
(no rescaling); 1000 train / 500 val images.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cfnet import ablation
from cfnet.diagnostics import analyze, feature_scale, fit_loss

__all__ = ["StudyProtocol", "STUDY", "TABLE_ALIASES", "parse_tables", "plan", "prepare_data", "run_study"]


@dataclass(frozen=True)
class StudyProtocol:
    """Everything the study holds fixed across runs."""

    preset: str = "shapes-hard-tiny"
    variant: str = "hard"  # cfnet data shapes --variant
    num_train: int = 1000
    num_val: int = 500
    size: int = 128
    data_seed: int = 0
    iters: int = 2000
    seeds: tuple[int, ...] = (0, 1, 2)

    @property
    def data_name(self) -> str:
        return f"shapes-{self.variant}-{self.num_train}-{self.num_val}-{self.size}-seed{self.data_seed}"


STUDY = StudyProtocol()

# CLI names of the tables (--tables 4,5,fn)
TABLE_ALIASES = {
    "4": "table4",
    "5": "table5",
    "6": "table6",
    "7": "table7",
    "fn": "fn",
    "controls": "controls",
    "position": "position",
}


def parse_tables(text: str) -> list[str]:
    """``"4,6,fn"`` -> ``["table4", "table6", "fn"]``; unknown names are an error naming them."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name = TABLE_ALIASES.get(part.removeprefix("table"), part)
        if name not in ablation.TABLES:
            raise ValueError(f"--tables: unknown table {part!r}; tables: {', '.join(TABLE_ALIASES)}")
        out.append(name)
    if not out:
        raise ValueError("--tables: no table named")
    return list(dict.fromkeys(out))


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds: expected non-negative integers, got {text!r}")
    return list(dict.fromkeys(seeds))


def plan(tables: Sequence[str], seeds: Sequence[int], *, all_seeds: bool = False) -> list[tuple[str, int]]:
    """The (run, seed) pairs the tables need, without repeats, all first-seed runs first.

    A run shared by several tables gets the most seeds any of them asks for.
    """
    wanted: dict[str, list[int]] = {}
    for table in tables:
        t = ablation.TABLES[table]
        table_seeds = list(seeds) if (all_seeds or t.seeds == "all") else list(seeds[:1])
        for run in ablation.table_runs(table):
            cur = wanted.setdefault(run, [])
            cur.extend(s for s in table_seeds if s not in cur)
    order = {s: i for i, s in enumerate(seeds)}
    pairs = [(run, seed) for run, ss in wanted.items() for seed in ss]
    return sorted(pairs, key=lambda p: order[p[1]])  # stable: table order within a seed


def prepare_data(data_dir: str | Path, protocol: StudyProtocol = STUDY, progress: bool = True) -> Path:
    """The study's data set in ``data_dir``: generated when absent, checked when present."""
    from cfnet.data.shapes import generate_shapes

    data_dir = Path(data_dir)
    if not (data_dir / "train" / "panoptic.json").is_file():
        if data_dir.exists() and any(data_dir.iterdir()):
            raise ValueError(f"--data {data_dir}: not empty and holds no train/panoptic.json")
        generate_shapes(
            data_dir,
            num_train=protocol.num_train,
            num_val=protocol.num_val,
            size=protocol.size,
            seed=protocol.data_seed,
            progress=progress,
            variant=protocol.variant,
        )
    described = ablation.describe_data(data_dir)
    expected = {"train": protocol.num_train, "val": protocol.num_val}
    got = {split: described[split]["images"] for split in expected}
    if got != expected:
        raise ValueError(
            f"--data {data_dir}: holds {got['train']} train / {got['val']} val images, the protocol "
            f"{expected['train']} / {expected['val']}; point --data at an empty folder to generate it"
        )
    return data_dir


def _diagnose(model: Any, val_dir: Path, device: str, progress: bool) -> dict[str, Any]:
    return analyze(model, val_dir, device=device, progress=progress)


def backfill_diagnostics(
    record_path: Path, checkpoint: Path, data_dir: Path, device: str = "cpu", progress: bool = True
) -> bool:
    """Add what a cached result lacks (``diagnostics``, ``training.fit_loss`` / ``feature_scale``)
    from its kept checkpoint.

    ``data_dir`` is the study's data set (``train/`` for the fit loss, ``val/`` for the
    diagnostics). Returns whether the record was rewritten.
    """
    from cfnet.checkpoint import load_checkpoint

    record = json.loads(record_path.read_text())
    needs_diagnostics = record.get("diagnostics") is None
    training = dict(record.get("training") or {})
    missing = [key for key in ("fit_loss", "feature_scale") if training.get(key) is None]
    if not (needs_diagnostics or missing) or not checkpoint.is_file():
        return False
    model, _, _ = load_checkpoint(checkpoint, device=device)
    if needs_diagnostics:
        record["diagnostics"] = ablation._plain(_diagnose(model, data_dir / "val", device, progress))
    if "fit_loss" in missing:
        training["fit_loss"] = fit_loss(model, data_dir / "train", device=device)
    if "feature_scale" in missing:
        training["feature_scale"] = feature_scale(model, data_dir / "train", device=device)
    if missing:
        record["training"] = ablation._plain(training)
    ablation._write_record(record_path, record)
    return True


def run_study(
    pairs: Sequence[tuple[str, int]],
    data_dir: str | Path,
    results_dir: str | Path,
    runs_dir: str | Path,
    *,
    protocol: StudyProtocol = STUDY,
    iters: int | None = None,
    device: str | None = None,
    progress: bool = True,
    log=print,
) -> list[dict[str, Any]]:
    """Train and evaluate every (run, seed) without a cached result; returns their records.

    Prints one line per run: ``[k/n] run seed s: cached | trained in …, ETA …``.
    """
    iters = iters or protocol.iters
    data_dir = prepare_data(data_dir, protocol, progress)
    results_dir, runs_dir = Path(results_dir), Path(runs_dir)
    records, durations = [], []
    for k, (name, seed) in enumerate(pairs, 1):
        overrides = ablation.RUNS[name]
        found = ablation.find_result(
            name, overrides, data_dir, iters, seed, results_dir=results_dir, preset=protocol.preset
        )
        if found is not None:
            path = Path(found["path"])
            ckpt = ablation.checkpoint_path(runs_dir, path)
            if backfill_diagnostics(path, ckpt, data_dir, device or "cpu", progress):
                found = ablation.load_result(path)
            log(f"[{k}/{len(pairs)}] {name} seed {seed}: cached ({path.name})")
            records.append(found)
            continue
        remaining = len(pairs) - k
        start = time.perf_counter()
        log(f"[{k}/{len(pairs)}] {name} seed {seed}: training {iters} iterations")
        ablation.run_ablation(
            name,
            overrides,
            data_dir,
            runs_dir,
            iters,
            seed,
            preset=protocol.preset,
            results_dir=results_dir,
            device=device,
            progress=progress,
            keep_checkpoint=True,
            diagnose=_diagnose,
        )
        durations.append(time.perf_counter() - start)
        eta = remaining * sum(durations) / len(durations)
        log(
            f"[{k}/{len(pairs)}] {name} seed {seed}: done in {durations[-1] / 60:.1f} min; "
            f"{remaining} runs left, ETA {eta / 3600:.1f} h"
        )
        records.append(
            ablation.find_result(
                name, overrides, data_dir, iters, seed, results_dir=results_dir, preset=protocol.preset
            )
        )
    return records


# ----------------------------------------------------------------------------------------------
# CLI: cfnet ablate run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tables",
        default="4,5,6,7,fn,controls,position",
        help="tables to run: 4,5,6,7,fn,controls,position (default: all)",
    )
    parser.add_argument(
        "--seeds",
        default=",".join(map(str, STUDY.seeds)),
        help="seeds; Tables 4 and 6 run all of them, the others the first (default 0,1,2)",
    )
    parser.add_argument("--all-seeds", action="store_true", help="run every seed for every table")
    parser.add_argument("--only", default=None, help="comma-separated run names: run only these")
    parser.add_argument(
        "--data",
        default=f"data/{STUDY.data_name}",
        help="the study's data set; generated here when absent (default data/<protocol>)",
    )
    parser.add_argument("--results", default="results/ablations", help="result JSON folder")
    parser.add_argument("--runs-dir", default="runs/ablations", help="training folders and kept checkpoints")
    parser.add_argument(
        "--iters", type=int, default=None, help=f"training iterations (default: the protocol's {STUDY.iters})"
    )
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"])
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan and what is cached; train nothing"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    try:
        tables = parse_tables(args.tables)
        seeds = parse_seeds(args.seeds)
        pairs = plan(tables, seeds, all_seeds=args.all_seeds)
        if args.only:
            only = [r.strip() for r in args.only.split(",") if r.strip()]
            unknown = [r for r in only if r not in ablation.RUNS]
            if unknown:
                raise ValueError(
                    f"--only: unknown run(s) {', '.join(unknown)}; runs: {', '.join(ablation.RUNS)}"
                )
            pairs = [p for p in pairs if p[0] in only]
        if args.iters is not None and args.iters < 1:
            raise ValueError(f"--iters must be >= 1, got {args.iters}")
        print(f"protocol: {json.dumps(asdict(STUDY))}")
        print(f"plan: {len(pairs)} runs: " + ", ".join(f"{r}/s{s}" for r, s in pairs))
        if args.dry_run:
            return 0
        run_study(
            pairs,
            args.data,
            args.results,
            args.runs_dir,
            iters=args.iters,
            device=args.device,
            progress=not args.no_progress,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"cfnet ablate run: {e}", file=sys.stderr)
        return 2
    return 0
