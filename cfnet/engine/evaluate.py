"""``cfnet eval`` and :func:`evaluate`: PQ / SQ / RQ, mIoU and mask AP of a model on a split.

    cfnet eval --checkpoint runs/tiny/model_final.pt --data data/shapes/val --out runs/tiny/eval

The model runs on every image of the split at the image's own resolution (it resizes to
``model.input.min_size_test`` internally and maps its outputs back), one image at a time, so that
padding never mixes images. As the images pass:

* the panoptic output is written in COCO panoptic format to ``OUT/panoptic/*.png`` +
  ``OUT/panoptic.json`` (:func:`cfnet.evaluation.write_panoptic_predictions`), then scored against
  the split's ground truth by panopticapi's matching (:func:`cfnet.evaluation.panoptic_quality`):
  PQ, SQ, RQ over all categories, things (``_th``) and stuff (``_st``);
* the semantic branch's argmax of ``sem_seg`` is compared with the ground-truth semantic map (void
  and crowd ignored): mIoU (:class:`cfnet.evaluation.SemanticEvaluator`);
* the instance branch's masks (after Matrix NMS, before the panoptic fusion) are scored by
  pycocotools against the thing instances, crowd regions ignored: mask AP
  (:class:`cfnet.evaluation.MaskAPEvaluator`).

All numbers are percent. ``OUT/metrics.json`` holds ``PQ SQ RQ PQ_th SQ_th RQ_th PQ_st SQ_st RQ_st
mIoU mask_AP`` (plus ``mask_AP50``, ``mask_AP75``, ``pixel_accuracy``, ``num_images``);
``OUT/per_class.json`` the per-category PQ / SQ / RQ and IoU.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

from cfnet.engine.runtime import resolve_device

METRIC_KEYS = ("PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st", "mIoU", "mask_AP")


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    split_dir: str | Path,
    out_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
    split: str | None = None,
    check_data: bool = True,
) -> dict[str, Any]:
    """Evaluate a CFNet on a COCO-panoptic split; writes predictions + metrics to ``out_dir``.

    ``split_dir`` is anything :class:`cfnet.data.PanopticDataset` accepts (a split folder, a
    panoptic JSON, or a dataset root with ``split``). Returns the metrics dict (percent). The
    model's train/eval mode is restored afterwards. With ``check_data`` the whole split is checked
    cheaply first (files there, header sizes, nothing listed twice), so a bad item fails before any
    work rather than when it is reached.
    """
    from tqdm.auto import tqdm

    from cfnet.data import PanopticDataset
    from cfnet.data.panoptic import CategoryMismatch
    from cfnet.evaluation import (
        MaskAPEvaluator,
        SemanticEvaluator,
        panoptic_quality_details,
        write_panoptic_predictions,
    )
    from cfnet.evaluation.touching import TouchingThingsEvaluator
    from cfnet.panoptic_io import prepare_output_dir

    categories = model.categories
    try:
        dataset = PanopticDataset(split_dir, split=split, categories=categories)  # original resolution
    except CategoryMismatch as e:
        raise CategoryMismatch(category_clash_message(model, e), e.json_path, e.json_categories) from None
    if len(dataset) == 0:
        raise ValueError(f"{dataset.json_path}: the split holds no images")
    if check_data:
        dataset.check_files(progress=progress)
    out_dir = prepare_output_dir(out_dir, "output folder")
    semantic = SemanticEvaluator(categories.num_classes, class_names=[r["name"] for r in categories.records])
    mask_ap = MaskAPEvaluator(categories)
    touching = TouchingThingsEvaluator()
    was_training = model.training
    model.to(device).eval()

    def predictions():
        # A generator: each image's outputs are written and scored, then dropped (memory stays flat).
        for i in tqdm(range(len(dataset)), desc="eval", disable=not progress, dynamic_ncols=True):
            image, target = dataset[i]
            out = model([image.to(device)])[0]
            semantic.update(out["sem_seg"].argmax(0).cpu(), target["sem_seg"])
            inst = out["instances"]
            mask_ap.update(
                target["image_id"],
                inst["masks"].cpu(),
                inst["labels"].cpu(),
                inst["scores"].float().cpu(),
                target["masks"],
                target["labels"],
                target.get("crowd_masks"),
                target.get("crowd_labels"),
            )
            gt_ids = torch.tensor(
                [categories.category_id(int(lab)) for lab in target["labels"]], dtype=torch.long
            )
            touching.update(out["panoptic_seg"].cpu(), out["segments_info"], target["masks"], gt_ids)
            yield {
                "image_id": target["image_id"],
                "file_name": target["file_name"],
                "panoptic_seg": out["panoptic_seg"].cpu(),
                "segments_info": out["segments_info"],
            }

    try:
        pred_json, pred_dir = write_panoptic_predictions(predictions(), out_dir, categories)
    finally:
        model.train(was_training)
    pq, pq_per_class = panoptic_quality_details(dataset.json_path, dataset.png_dir, pred_json, pred_dir)
    sem = semantic.compute()
    ap = mask_ap.compute()
    metrics: dict[str, Any] = {
        **{k: float(pq[k]) for k in ("PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st")},
        "mIoU": float(sem["mIoU"]),
        "mask_AP": float(ap["mask_AP"]),
        "mask_AP50": float(ap["mask_AP50"]),
        "mask_AP75": float(ap["mask_AP75"]),
        "pixel_accuracy": float(sem["pixel_accuracy"]),
        **touching.compute(),
        "stuff_confusion": stuff_confusion(semantic.confusion, categories),
        "num_images": len(dataset),
    }
    (out_dir / "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=2) + "\n")
    per_class = {"panoptic": pq_per_class, "semantic_IoU": sem["IoU"]}
    (out_dir / "per_class.json").write_text(json.dumps(_json_safe(per_class), indent=2) + "\n")
    return metrics


def stuff_confusion(confusion: torch.Tensor, categories: Any) -> dict[str, dict[str, float]]:
    """Row-normalised semantic confusion of the stuff classes, percent: ``{gt: {predicted: %}}``.

    Rows are the ground-truth stuff classes (pixels of that class, void excluded); columns are the
    stuff classes plus ``"thing"`` (any thing class) and ``"void"`` (predicted ignore). This is
    where a semantic branch without long-range context fails on ``shapes`` (docs/shapes.md).
    """
    names = [r["name"] for r in categories.records]
    stuff = [categories.contiguous(int(r["id"])) for r in categories.stuff]
    things = [categories.contiguous(int(r["id"])) for r in categories.things]
    conf = confusion.double()
    out: dict[str, dict[str, float]] = {}
    for g in stuff:
        total = float(conf[g].sum())
        if total == 0:
            continue
        row = {names[p]: 100.0 * float(conf[g, p]) / total for p in stuff}
        row["thing"] = 100.0 * float(conf[g, things].sum()) / total if things else 0.0
        row["void"] = 100.0 * float(conf[g, -1]) / total
        out[names[g]] = row
    return out


def _names(categories, n: int = 4) -> str:
    names = [r["name"] for r in categories.records]
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def category_clash_message(model: torch.nn.Module, error: Exception) -> str:
    """The split's categories are not the model's: say which data set each comes from."""
    cats = model.categories
    cfg = getattr(model, "cfg", None)
    spec = cfg.model.categories if cfg is not None else "?"
    theirs = getattr(error, "json_categories", None)
    split = getattr(error, "json_path", None) or "the split"
    split_desc = f"{theirs.num_classes} classes: {_names(theirs)}" if theirs is not None else "other classes"
    return (
        f"the checkpoint was trained on the {spec!r} categories "
        f"({cats.num_classes} classes: {_names(cats)}), "
        f"but the split {split} has its own ({split_desc}); evaluate a checkpoint on data of the set "
        f"it was trained on ({error})"
    )


def _json_safe(obj: Any) -> Any:
    # NaN (e.g. mask AP of a split without things) is not valid JSON: write null.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def format_table(metrics: dict[str, Any]) -> str:
    """A small text table of the metrics (percent)."""

    def f(v: Any) -> str:
        return "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:5.1f}"

    rows = [f"{'':8}{'PQ':>7}{'SQ':>7}{'RQ':>7}"]
    for name, suffix in (("all", ""), ("things", "_th"), ("stuff", "_st")):
        rows.append(f"{name:8}" + "".join(f"  {f(metrics.get(k + suffix))}" for k in ("PQ", "SQ", "RQ")))
    rows.append(f"mIoU (semantic branch)   {f(metrics.get('mIoU'))}")
    rows.append(f"mask AP (instance branch) {f(metrics.get('mask_AP'))}")
    if "num_images" in metrics:
        rows.append(f"images                    {metrics['num_images']}")
    return "\n".join(rows)


# ----------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="default", help="checkpoint (default: the shipped model)")
    parser.add_argument("--data", required=True, help="split folder (images/, panoptic/, panoptic.json)")
    parser.add_argument("--split", default=None, help="split name when --data is a dataset root (e.g. val)")
    parser.add_argument("--out", required=True, help="output folder for predictions and metrics.json")
    parser.add_argument("--json", default=None, help="also write the metrics JSON to this file")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-check-data",
        action="store_true",
        help="skip the up-front check of the split's files (for very large data sets)",
    )


def main(args: argparse.Namespace) -> int:
    from cfnet.checkpoint import CheckpointError, load_checkpoint
    from cfnet.panoptic_io import check_output_file, describe_os_error, prepare_output_dir

    try:
        prepare_output_dir(args.out, "--out")  # before any work: a bad path fails at once
        if args.json:
            check_output_file(args.json, "--json")
        device = resolve_device(args.device)
        model, _, _ = load_checkpoint(args.checkpoint, device=device)
        metrics = evaluate(
            model, args.data, args.out, device=device, progress=not args.no_progress, split=args.split,
            check_data=not args.no_check_data,
        )  # fmt: skip
    except (CheckpointError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"cfnet eval: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a write that failed mid-way (disk full, ...)
        print(f"cfnet eval: cannot write {describe_os_error(e)}", file=sys.stderr)
        return 1
    print(format_table(metrics))
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(_json_safe(metrics), indent=2) + "\n")
        except OSError as e:
            print(f"cfnet eval: --json: cannot write {describe_os_error(e)}", file=sys.stderr)
            return 1
    return 0
