"""The paper's ablation study (§4.2, Tables 4–7) as config overrides on the ``shapes`` set.

Every table row is a set of ``key=value`` overrides of a preset (``shapes-tiny`` by default);
:func:`run_ablation` trains it (:func:`cfnet.engine.train.train`), evaluates it on the val split
(:func:`cfnet.engine.evaluate.evaluate`: PQ/SQ/RQ from panopticapi, mIoU, mask AP), times
inference, and caches the result as JSON, so a finished study is shown again without retraining.
Notebook ``05_ablations`` is a thin layer over this module.

Choices (the paper leaves them open or ties them to COCO):

* **Table 4** ("SCM / ICM on and off"): without ICM the instance branch is SOLOv2's standard head,
  i.e. CoordConv (``position=coords``) — Table 8 describes the shared baseline as "a standard SOLO
  instance segmentation head", and SOLOv2's head has CoordConv. Without SCM the semantic branch
  has no module (``module=none``).
* **Table 5** (semantic module: none / non-local attention / SCM; mIoU) keeps the instance branch
  at the preset's ICM, and **Table 6** (position: none / CoordConv / sine / ICM; mask AP) keeps the
  semantic branch at the preset's SCM: our trainer always trains the full panoptic network, so
  "the other branch" is held at the full model rather than removed.
* **Table 7**: N (``model.correlation.num_levels``) is shared by SCM and ICM in our config, so the
  N rows change both modules; the table reports mIoU for them as the paper does. S
  (``model.correlation.num_refs``) only exists in the ICM; reported as mask AP.
* Rows that are the same config across tables (e.g. the full model appears in all four) are the
  same run: runs are named by config (:data:`RUNS`), tables refer to runs by name.

Cache. A result is ``RESULTS/<run>-<key>.json`` where ``key`` hashes everything that determines
the result (preset, overrides, iterations, seed, the data set's description). A file whose
recorded settings differ is never used for another setting; ``force=True`` retrains.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "RUNS",
    "TABLES",
    "PAPER",
    "AblationRow",
    "AblationTable",
    "table_runs",
    "all_runs",
    "run_key",
    "run_settings",
    "result_path",
    "load_result",
    "find_result",
    "run_ablation",
    "measure_latency",
    "table_records",
    "describe_data",
]

DEFAULT_PRESET = "shapes-tiny"
RESULT_FORMAT = "cfnet-ablation-result"
RESULT_VERSION = 1

_SEM = "model.semantic.module"
_POS = "model.instance.position"

# Every distinct configuration of the study, by name (overrides of the preset).
_CIRC = "model.padding=circular"
RUNS: dict[str, tuple[str, ...]] = {
    "baseline": (f"{_SEM}=none", f"{_POS}=coords"),  # no SCM, SOLOv2's CoordConv head
    "scm": (f"{_SEM}=scm", f"{_POS}=coords"),
    "icm": (f"{_SEM}=none", f"{_POS}=icm"),
    "scm-icm": (f"{_SEM}=scm", f"{_POS}=icm"),  # the full model = the preset
    "att-icm": (f"{_SEM}=attention", f"{_POS}=icm"),
    "scm-nopos": (f"{_SEM}=scm", f"{_POS}=none"),  # SOLOv2's mask-branch CoordConv stays
    # control: no position information anywhere (no position module, no mask-branch CoordConv)
    "scm-nopos-nomc": (f"{_SEM}=scm", f"{_POS}=none", "model.instance.mask_coords=false"),
    "scm-sine": (f"{_SEM}=scm", f"{_POS}=sine"),
    # our extension, not the paper's: the ICM's theta predictor also sees the CoordConv channels
    "scm-icm-coords": (f"{_SEM}=scm", f"{_POS}=icm-coords"),
    "n3": (f"{_SEM}=scm", f"{_POS}=icm", "model.correlation.num_levels=3"),
    "n7": (f"{_SEM}=scm", f"{_POS}=icm", "model.correlation.num_levels=7"),
    "s8": (f"{_SEM}=scm", f"{_POS}=icm", "model.correlation.num_refs=8"),
    "s32": (f"{_SEM}=scm", f"{_POS}=icm", "model.correlation.num_refs=32"),
    # which function family (Table "fn"): Eq. 3's periodic DFT and a non-Fourier family
    "dft-periodic": (f"{_SEM}=scm", f"{_POS}=icm", "model.correlation.function=dft-periodic"),
    "gaussian": (f"{_SEM}=scm", f"{_POS}=icm", "model.correlation.function=gaussian"),
    # Table "position": the position control without the border cue of zero padding
    # (cfnet/padding.py), because at 128 px the zero-padded control located the crowds anyway
    "circ-scm": (f"{_SEM}=scm", f"{_POS}=coords", _CIRC),
    "circ-scm-nopos-nomc": (f"{_SEM}=scm", f"{_POS}=none", "model.instance.mask_coords=false", _CIRC),
}


@dataclass(frozen=True)
class AblationRow:
    """One row: its label in the table, the run it uses, and the paper's numbers (COCO val)."""

    label: str
    run: str
    paper: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AblationTable:
    """One of Tables 4–7: which metrics it reports (our names) and its rows."""

    name: str
    title: str
    metrics: tuple[str, ...]
    rows: tuple[AblationRow, ...]
    note: str = ""
    reference: str = ""  # label of the row the paired differences are taken against
    seeds: str = "some"  # "all": every study seed; "some": at least the first (the protocol)


# Our metric names: PQ, SQ, RQ, PQ_th, PQ_st (panopticapi), mIoU, mask_AP, latency_ms.
TABLES: dict[str, AblationTable] = {
    "table4": AblationTable(
        "table4",
        "Table 4: SCM and ICM on and off (PQ, SQ, RQ; inference time)",
        ("PQ", "SQ", "RQ", "PQ_th", "PQ_st", "latency_ms"),
        (
            AblationRow("baseline", "baseline", {"PQ": 39.3, "SQ": 77.6, "RQ": 48.3, "latency_ms": 84.3}),
            AblationRow("+ SCM", "scm", {"PQ": 39.9, "SQ": 77.8, "RQ": 49.1, "latency_ms": 88.2}),
            AblationRow("+ ICM", "icm", {"PQ": 39.6, "SQ": 77.1, "RQ": 48.7, "latency_ms": 90.0}),
            AblationRow("+ SCM + ICM", "scm-icm", {"PQ": 40.5, "SQ": 78.6, "RQ": 49.7, "latency_ms": 93.4}),
        ),
        "Without ICM the instance branch keeps SOLOv2's CoordConv. Paper: COCO val, 12 epochs, "
        "R50-FPN, V100 latency; ours: shapes val, shapes-tiny, this machine's latency.",
        reference="baseline",
        seeds="all",
    ),
    "table5": AblationTable(
        "table5",
        "Table 5: semantic module — none vs non-local attention vs SCM (mIoU)",
        ("mIoU", "PQ_st", "latency_ms"),
        (
            AblationRow("none", "icm", {"mIoU": 47.6}),
            AblationRow("attention", "att-icm", {"mIoU": 50.1}),
            AblationRow("SCM", "scm-icm", {"mIoU": 50.7}),
        ),
        "Instance branch held at ICM (the full model's).",
        reference="none",
    ),
    "table6": AblationTable(
        "table6",
        "Table 6: instance position module — none vs CoordConv vs sine vs ICM (mask AP)",
        ("mask_AP", "PQ_th", "latency_ms"),
        (
            AblationRow("none", "scm-nopos", {"mask_AP": 29.5}),
            AblationRow("coords", "scm", {"mask_AP": 32.9}),
            AblationRow("sine", "scm-sine", {"mask_AP": 32.5}),
            AblationRow("ICM", "scm-icm", {"mask_AP": 33.5}),
            AblationRow("ICM + coords (ours)", "scm-icm-coords"),
        ),
        "Semantic branch held at SCM. The paper's table header says mIoU, its text says mAP "
        "(\"ICM obtains 33.5% mAP\"): these are mask AP. \"ICM + coords\" is our extension, not "
        "the paper's: the ICM's theta predictor also sees the two CoordConv channels.",
        reference="coords",
        seeds="all",
    ),
    "table7": AblationTable(
        "table7",
        "Table 7: Fourier levels N (mIoU) and reference grid S (mask AP)",
        ("mIoU", "mask_AP"),
        (
            AblationRow("N=3", "n3", {"mIoU": 50.3}),
            AblationRow("N=5", "scm-icm", {"mIoU": 50.7}),
            AblationRow("N=7", "n7", {"mIoU": 50.5}),
            AblationRow("S=8", "s8", {"mask_AP": 33.3}),
            AblationRow("S=16", "scm-icm", {"mask_AP": 33.5}),
            AblationRow("S=32", "s32", {"mask_AP": 33.6}),
        ),
        "N is shared by SCM and ICM in our config; the N rows change both. S only exists in the ICM.",
        reference="N=5",
    ),
    "fn": AblationTable(
        "fn",
        "Table fn: which function family (ours, not in the paper) — SCM and ICM both use it",
        ("PQ", "PQ_th", "PQ_st", "mIoU", "mask_AP"),
        (
            AblationRow("dft (Eq. 5, mirrored, the paper's)", "scm-icm"),
            AblationRow("dft-periodic (Eq. 3)", "dft-periodic"),
            AblationRow("gaussian (non-Fourier)", "gaussian"),
        ),
        "The paper motivates the mirrored extension of Eq. 4 against the periodic Eq. 3 but reports "
        "no comparison; gaussian has the same 2N+1 numbers per axis.",
        reference="dft (Eq. 5, mirrored, the paper's)",
    ),
    "controls": AblationTable(
        "controls",
        "Headroom controls: does the benchmark need position and long-range context at all?",
        ("PQ", "PQ_th", "PQ_touch", "mask_AP", "PQ_st", "mIoU"),
        (
            AblationRow("SCM + CoordConv", "scm"),
            AblationRow("no position anywhere", "scm-nopos-nomc"),
            AblationRow("no semantic module", "baseline"),
        ),
        "Controls that lack a mechanism entirely, not CFNet's modules: \"no position anywhere\" has "
        "no position module and no CoordConv in the mask branch; \"no semantic module\" fuses the "
        "FPN levels with nothing that aggregates along rows or columns.",
        reference="SCM + CoordConv",
    ),
    "position": AblationTable(
        "position",
        "The position control without the border cue: circular padding (our control)",
        ("PQ_th", "PQ_touch", "touch_recall", "mask_AP", "PQ"),
        (
            AblationRow("coords", "circ-scm"),
            AblationRow("no position anywhere", "circ-scm-nopos-nomc"),
        ),
        "The headroom control for position again, with every convolution, max-pool and mask-branch "
        "upsampling wrapping around instead of padding with zeros (`model.padding=circular`): the "
        "network is then equivariant to shifts, so zero padding cannot be where it finds position. "
        "Only if the control is clearly worse here are Table 6's rows worth rerunning this way. "
        "Our extension, not the paper's.",
        reference="coords",
    ),
}

# The paper's numbers by table and row label, for side-by-side tables.
PAPER: dict[str, dict[str, dict[str, float]]] = {
    name: {row.label: dict(row.paper) for row in table.rows} for name, table in TABLES.items()
}


def table_runs(table: str) -> list[str]:
    """Run names a table needs, in row order, without repeats."""
    if table not in TABLES:
        raise ValueError(f"unknown ablation table {table!r}; tables: {', '.join(TABLES)}")
    return list(dict.fromkeys(row.run for row in TABLES[table].rows))


PAPER_TABLES = ("table4", "table5", "table6", "table7")


def all_runs(tables: Sequence[str] | None = None) -> list[str]:
    """Distinct run names of the given tables (the paper's four by default), in first-use order."""
    names = list(PAPER_TABLES) if tables is None else list(tables)
    return list(dict.fromkeys(r for t in names for r in table_runs(t)))


# ----------------------------------------------------------------------------------------------
# cache


def describe_data(data_dir: str | Path) -> dict[str, Any]:
    """What identifies a data set for the cache: image counts and sizes of its splits.

    Reads ``DIR/train/panoptic.json`` and ``DIR/val/panoptic.json`` (the layout
    :func:`cfnet.data.generate_shapes` writes); the folder's own path is deliberately not part of
    it, so a regenerated copy of the same set elsewhere hits the same cache.
    """
    data_dir = Path(data_dir)
    out: dict[str, Any] = {}
    for split in ("train", "val"):
        path = data_dir / split / "panoptic.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no {split} split (expected DIR/{split}/panoptic.json)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        images = data.get("images", [])
        sizes = sorted({(int(im["height"]), int(im["width"])) for im in images})
        digest = hashlib.sha1(json.dumps(data.get("annotations", []), sort_keys=True).encode()).hexdigest()
        out[split] = {
            "images": len(images),
            "sizes": [list(s) for s in sizes],
            "annotations_sha1": digest[:12],
        }
    return out


def _settings(
    preset: str, overrides: Sequence[str], iters: int, seed: int, data: dict[str, Any]
) -> dict[str, Any]:
    return {"preset": preset, "overrides": list(overrides), "iters": iters, "seed": seed, "data": data}


def run_settings(
    overrides: Sequence[str],
    data_dir: str | Path,
    iters: int,
    seed: int = 0,
    *,
    preset: str = DEFAULT_PRESET,
    extra_overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Everything that determines a run's result (what the cache key hashes)."""
    all_overrides = _check_overrides(overrides) + _check_overrides(extra_overrides)
    return _settings(preset, all_overrides, iters, seed, describe_data(data_dir))


def run_key(settings: dict[str, Any]) -> str:
    """Short stable hash of a run's settings (see the module docstring)."""
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def result_path(results_dir: str | Path, name: str, settings: dict[str, Any]) -> Path:
    return Path(results_dir) / f"{name}-{run_key(settings)}.json"


def load_result(path: str | Path, settings: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """A cached result, or None when the file is absent; a file that is not one is an error."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: cached ablation result is not valid JSON ({e}); delete it to rerun") from e
    if not isinstance(data, dict) or data.get("format") != RESULT_FORMAT or "metrics" not in data:
        raise ValueError(
            f"{path}: not a cached ablation result (format {RESULT_FORMAT!r}); delete it to rerun"
        )
    if settings is not None and data.get("settings") != settings:
        return None
    return data


def find_result(
    name: str,
    overrides: Sequence[str],
    data_dir: str | Path,
    iters: int,
    seed: int = 0,
    *,
    results_dir: str | Path,
    preset: str = DEFAULT_PRESET,
    extra_overrides: Sequence[str] = (),
) -> dict[str, Any] | None:
    """The cached record of exactly this run (settings, metrics, environment, ``path``), or None."""
    settings = run_settings(overrides, data_dir, iters, seed, preset=preset, extra_overrides=extra_overrides)
    path = result_path(results_dir, name, settings)
    record = load_result(path, settings)
    if record is not None:
        record = dict(record, path=str(path))
    return record


# ----------------------------------------------------------------------------------------------
# running


def measure_latency(model: Any, images: Sequence[Any], *, warmup: int = 1, device: str = "cpu") -> float:
    """Median wall time of one ``model([image])`` call in milliseconds (eval mode, no grad).

    Includes pre- and post-processing (Matrix NMS, panoptic fusion), as the paper's "Inf (ms)"
    does. Only comparable between runs on the same machine under the same load.
    """
    import torch

    if len(images) == 0:
        raise ValueError("measure_latency needs at least one image")
    model.eval()
    times = []
    with torch.inference_mode():
        for i, image in enumerate(list(images[:warmup]) + list(images)):
            image = image.to(device)
            if device != "cpu" and torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            model([image])
            if device != "cpu" and torch.cuda.is_available():
                torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    return times[len(times) // 2]


def _check_overrides(overrides: Sequence[str]) -> list[str]:
    if isinstance(overrides, str):
        raise ValueError(f"overrides must be a list of key=value strings, got the string {overrides!r}")
    out = []
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ValueError(f"override {item!r}: expected key=value (e.g. model.semantic.module=none)")
        out.append(item)
    return out


def run_ablation(
    name: str,
    overrides: Sequence[str],
    data_dir: str | Path,
    out_dir: str | Path,
    iters: int,
    seed: int = 0,
    *,
    preset: str = DEFAULT_PRESET,
    results_dir: str | Path | None = None,
    extra_overrides: Sequence[str] = (),
    device: str | None = None,
    progress: bool = False,
    force: bool = False,
    latency_images: int = 10,
    keep_run: bool = False,
    keep_checkpoint: bool = False,
    diagnose: Callable[[Any, Path, str, bool], dict[str, Any]] | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train + evaluate one ablation configuration, or load its cached result.

    Args:
        name: the run's name (a key of :data:`RUNS`, or any name for a custom run).
        overrides: ``key=value`` config overrides of ``preset`` defining the run.
        data_dir: a data set with ``train/`` and ``val/`` splits (e.g. from ``generate_shapes``).
        out_dir: where training writes (``out_dir/<name>-seed<seed>``); removed after a successful run unless
            ``keep_run`` (only the JSON result is kept).
        iters: training iterations (``solver.max_iters``; the LR steps are scaled with it).
        seed: ``seed`` of the config (initialisation and data order).
        results_dir: the JSON cache folder (default: ``out_dir``).
        extra_overrides: overrides that shorten or adapt the schedule (batch size, logging) and are
            part of the cache key like the rest.
        force: retrain even when a cached result exists.
        keep_checkpoint: copy the final weights to :func:`checkpoint_path` (``out_dir/checkpoints``).
        diagnose: ``diagnose(model, val_dir, device, progress) -> dict``, stored as the record's
            ``diagnostics`` (the study passes :func:`cfnet.diagnostics.analyze`).

    Returns the metrics dict: evaluate's keys (PQ, SQ, RQ, PQ_th, …, mIoU, mask_AP) plus
    ``latency_ms``, ``params_m`` and ``train_seconds``. The full record (settings, versions) is
    in the JSON file.
    """
    import cfnet
    from cfnet.checkpoint import load_checkpoint
    from cfnet.config import apply_overrides
    from cfnet.diagnostics import feature_scale, fit_loss
    from cfnet.engine.evaluate import evaluate
    from cfnet.engine.train import train

    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be a positive int, got {iters!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    data_dir = Path(data_dir)
    out_dir = Path(out_dir)
    results_dir = Path(results_dir) if results_dir is not None else out_dir
    settings = run_settings(overrides, data_dir, iters, seed, preset=preset, extra_overrides=extra_overrides)
    all_overrides = settings["overrides"]
    path = result_path(results_dir, name, settings)
    if not force:
        cached = load_result(path, settings)
        if cached is not None:
            return dict(cached["metrics"])

    cfg = cfnet.get_config(preset, all_overrides)
    base_iters = cfg.solver.max_iters
    # Scale the schedule to the requested length: LR steps and warm-up keep their share of it.
    scale = iters / base_iters
    steps = [max(1, min(iters - 1, int(round(s * scale)))) for s in cfg.solver.steps] if iters > 1 else []
    warmup = min(cfg.solver.warmup_iters, max(0, iters // 10))
    apply_overrides(
        cfg,
        [
            f"solver.max_iters={iters}",
            f"solver.steps={json.dumps(steps)}",
            f"solver.warmup_iters={warmup}",
            f"solver.checkpoint_period={iters}",
            f"seed={seed}",
        ],
    )
    run_dir = out_dir / f"{name}-seed{seed}"  # parallel studies may train other seeds of a run
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a stale or half-finished run of another setting
    start = time.perf_counter()
    result = train(cfg, data_dir, run_dir, device=device, progress=progress, callback=callback,
                   evaluate_val=False)
    train_seconds = time.perf_counter() - start

    model, _, _ = load_checkpoint(result["final_checkpoint"], device=device or "cpu")
    metrics = dict(
        evaluate(model, data_dir / "val", run_dir / "eval", device=device or "cpu", progress=progress)
    )
    diagnostics = diagnose(model, data_dir / "val", device or "cpu", progress) if diagnose else None
    # Whether the final weights still fit the training data: a run that diverged without a NaN
    # (a loss spike the network never recovers from) is told apart from a module that lost.
    training = {
        "fit_loss": fit_loss(model, data_dir / "train", device=device or "cpu"),
        "feature_scale": feature_scale(model, data_dir / "train", device=device or "cpu"),
    }
    metrics["latency_ms"] = _latency_on_split(model, data_dir / "val", latency_images, device or "cpu")
    metrics["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    metrics["train_seconds"] = train_seconds
    metrics = {k: _plain(v) for k, v in metrics.items()}

    record = {
        "format": RESULT_FORMAT,
        "version": RESULT_VERSION,
        "name": name,
        "settings": settings,
        "metrics": metrics,
        "diagnostics": _plain(diagnostics) if diagnostics is not None else None,
        "training": _plain(training),
        "environment": {
            "cfnet": cfnet.__version__,
            "torch": _torch_version(),
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "device": device or "cpu",
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_record(path, record)
    if keep_checkpoint:
        # The final weights stay beside the runs (not committed), so diagnostics can be computed later.
        ckpt = checkpoint_path(out_dir, path)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result["final_checkpoint"], ckpt)
        log = run_dir / "metrics.jsonl"  # the loss curve: what a collapsed or odd run is read from
        if log.is_file():
            shutil.copyfile(log, ckpt.with_suffix(".jsonl"))
    if not keep_run:
        shutil.rmtree(run_dir, ignore_errors=True)
    return metrics


def _write_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)  # atomic: an interrupted write never leaves a half file under the real name


def checkpoint_path(out_dir: str | Path, result_file: str | Path) -> Path:
    """Where :func:`run_ablation` keeps a run's final weights: ``OUT/checkpoints/<result stem>.pt``."""
    return Path(out_dir) / "checkpoints" / (Path(result_file).stem + ".pt")


def _latency_on_split(model: Any, split_dir: Path, count: int, device: str) -> float:
    from cfnet.data import PanopticDataset

    dataset = PanopticDataset(split_dir)
    images = [dataset[i][0] for i in range(min(count, len(dataset)))]
    return measure_latency(model, images, device=device)


def _torch_version() -> str:
    import torch

    return torch.__version__


def _plain(value: Any) -> Any:
    """JSON-safe numbers (tensors / numpy scalars to float; NaN to None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# ----------------------------------------------------------------------------------------------
# tables


def table_records(table: str, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a side-by-side table: for each row and metric, ours and the paper's.

    ``results`` maps run names to metrics dicts (what :func:`run_ablation` returns); a run missing
    from it gives None for ours. Each record: ``{"row", "run", "<metric>", "<metric> (paper)", …}``
    for the table's metrics (paper values None where the paper has none).
    """
    if table not in TABLES:
        raise ValueError(f"unknown ablation table {table!r}; tables: {', '.join(TABLES)}")
    t = TABLES[table]
    records = []
    for row in t.rows:
        ours = results.get(row.run) or {}
        rec: dict[str, Any] = {"row": row.label, "run": row.run}
        for m in t.metrics:
            rec[m] = ours.get(m)
            rec[f"{m} (paper)"] = row.paper.get(m)
        records.append(rec)
    return records
