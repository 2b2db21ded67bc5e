"""Panoptic quality (PQ = SQ · RQ, Kirillov et al. 2019), the number the project reports.

The matching and the per-category sums are ``panopticapi.evaluation.pq_compute_single_core``
(package ``panopticapi-lite``) unchanged; only the driver around it is ours, because the package's
``pq_compute`` starts ``multiprocessing.cpu_count()`` worker processes whatever the data size (64
processes for 3 images on a big machine), never closes its pool, and prints to stdout (which would
corrupt ``cfnet eval``'s JSON). Here the work is split over at most ``num_workers`` processes
(default: the usable CPUs, and one process per ~100 images at most), run in-process when one
suffices, with the package's prints silenced.

Writing predictions: :func:`write_panoptic_predictions` turns the model's outputs (``panoptic_seg``
(H, W) ids + ``segments_info`` with dataset category ids) into COCO panoptic results — PNGs plus a
JSON with ``annotations`` — in the same split layout the data layer reads (``panoptic/``,
``panoptic.json``).
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from cfnet.panoptic_io import PanopticFormatError, dump_json, png_size, write_panoptic_png

PQ_KEYS = ("PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st")
IMAGES_PER_WORKER = 100  # below this, a worker process costs more than it saves


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".") or "image"


def _png_name(image_id, file_name: str, taken: set[str]) -> str:
    """A name for the PNG of one image, unique among ``taken`` (which it joins).

    The image's stem (COCO's convention) while no earlier image has it; otherwise the image's full
    relative path, then its id: ``x.png`` and ``x.jpg`` (or ``a/x.png`` and ``b/x.png``) are
    different images with one stem, and must not overwrite each other's predictions.
    """
    candidates = [Path(file_name).stem + ".png", _safe(file_name) + ".png", f"id-{_safe(str(image_id))}.png"]
    name = next((c for c in candidates if c not in taken), None)
    k = 1
    while name is None:
        name = f"id-{_safe(str(image_id))}_{k}.png"
        name, k = (name if name not in taken else None), k + 1
    taken.add(name)
    return name


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def write_panoptic_predictions(
    predictions: Iterable[dict], out_dir: str | os.PathLike, categories
) -> tuple[Path, Path]:
    """Write COCO panoptic results to ``out_dir/panoptic/*.png`` and ``out_dir/panoptic.json``.

    Each prediction is a dict with ``image_id``, ``file_name`` (the image's, listed once; the PNG
    gets its stem + ``.png``, or a longer unique name when an earlier image had that stem),
    ``panoptic_seg`` ((H, W) integer ids, 0 = void; tensor or array) and ``segments_info``
    (``{id, category_id, isthing, score[, area]}``, dataset category ids). ``area`` is recomputed
    from the map; segments with no pixel left are dropped (they predict nothing); a non-zero id in
    the map without a ``segments_info`` entry, or an unknown category id, is an error.
    ``categories`` (:class:`cfnet.categories.Categories`) is written into the JSON.
    Returns ``(json_path, png_dir)``.
    """
    out_dir = Path(out_dir)
    png_dir = out_dir / "panoptic"
    png_dir.mkdir(parents=True, exist_ok=True)
    annotations, images = [], []
    seen: set = set()
    png_names: set[str] = set()
    file_names: dict[str, object] = {}
    for n, pred in enumerate(predictions):
        for key in ("image_id", "file_name", "panoptic_seg", "segments_info"):
            if key not in pred:
                raise KeyError(f"prediction #{n}: missing key {key!r}")
        image_id = pred["image_id"]
        image_id = image_id.item() if hasattr(image_id, "item") else image_id
        if image_id in seen:
            raise ValueError(f"prediction #{n}: image_id {image_id!r} predicted twice")
        seen.add(image_id)
        file_name = str(pred["file_name"])
        if file_name in file_names:
            raise ValueError(
                f"prediction #{n}: image file {file_name!r} appears twice (image ids "
                f"{file_names[file_name]!r} and {image_id!r}); each image must be listed once"
            )
        file_names[file_name] = image_id
        pan = _to_numpy(pred["panoptic_seg"]).astype(np.int64)
        if pan.ndim != 2:
            raise ValueError(f"prediction for image {image_id}: panoptic_seg must be (H, W), got {pan.shape}")
        if pan.size and pan.min() < 0:
            raise ValueError(f"prediction for image {image_id}: negative segment id {pan.min()} (void is 0)")
        uniq, counts = np.unique(pan, return_counts=True)
        area = {int(u): int(c) for u, c in zip(uniq, counts) if u != 0}
        segments = []
        for s in pred["segments_info"]:
            sid = int(s["id"])
            cid = int(s["category_id"])
            if cid not in categories:
                raise ValueError(
                    f"prediction for image {image_id}: segment {sid} has unknown category id {cid}"
                )
            if area.get(sid, 0) == 0:
                continue
            rec = {
                "id": sid,
                "category_id": cid,
                "isthing": int(categories.is_thing(categories.contiguous(cid))),
                "area": area[sid],
            }
            if "score" in s:
                rec["score"] = float(s["score"])
            segments.append(rec)
        missing = sorted(set(area) - {s["id"] for s in segments})
        if missing:
            raise ValueError(
                f"prediction for image {image_id}: segment ids {missing[:10]} are in panoptic_seg but not in "
                "segments_info"
            )
        png_name = _png_name(image_id, file_name, png_names)
        write_panoptic_png(png_dir / png_name, pan)
        annotations.append({"image_id": image_id, "file_name": png_name, "segments_info": segments})
        images.append(
            {
                "id": image_id,
                "file_name": str(pred["file_name"]),
                "height": pan.shape[0],
                "width": pan.shape[1],
            }
        )
    json_path = out_dir / "panoptic.json"
    dump_json({"images": images, "annotations": annotations, "categories": categories.to_json()}, json_path)
    return json_path, png_dir


# ----------------------------------------------------------------------------------------------
# PQ


def _pq_chunk(args):
    """One worker's share: panopticapi's own per-image routine, its progress prints swallowed."""
    from panopticapi.evaluation import pq_compute_single_core

    proc_id, pairs, gt_dir, pred_dir, categories = args
    with contextlib.redirect_stdout(io.StringIO()):
        return pq_compute_single_core(proc_id, pairs, gt_dir, pred_dir, categories)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _load_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} JSON not found") from None
    except json.JSONDecodeError as e:
        raise PanopticFormatError(f"{path}: {what} JSON is not valid JSON ({e})") from e
    for key in ("annotations",) + (("categories",) if what == "ground-truth" else ()):
        if not isinstance(data.get(key), list):
            raise PanopticFormatError(f"{path}: {what} JSON has no {key!r} list")
    return data


def panoptic_quality_details(
    gt_json: str | os.PathLike,
    gt_dir: str | os.PathLike,
    pred_json: str | os.PathLike,
    pred_dir: str | os.PathLike,
    *,
    image_ids: Sequence | None = None,
    num_workers: int | None = None,
) -> tuple[dict[str, float], dict[str, dict]]:
    """PQ summary (as :func:`panoptic_quality`) and per-category results
    ``{category name: {"category_id", "isthing", "PQ", "SQ", "RQ"}}`` (percent; categories that
    occur in neither ground truth nor prediction are left out)."""
    from panopticapi.evaluation import PQStat

    gt_json, pred_json = Path(gt_json), Path(pred_json)
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    gt = _load_json(gt_json, "ground-truth")
    pred = _load_json(pred_json, "prediction")
    for d, what in ((gt_dir, "ground-truth"), (pred_dir, "prediction")):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: {what} PNG folder not found")
    categories = {c["id"]: c for c in gt["categories"]}
    preds = {a["image_id"]: a for a in pred["annotations"]}
    gt_anns = gt["annotations"]
    if image_ids is not None:
        wanted = set(image_ids)
        gt_anns = [a for a in gt_anns if a["image_id"] in wanted]
        if len(gt_anns) != len(wanted):
            found = {a["image_id"] for a in gt_anns}
            raise ValueError(
                f"{gt_json}: image ids {sorted(wanted - found, key=str)[:10]} are not in the ground truth"
            )
    if not gt_anns:
        raise ValueError(f"{gt_json}: no ground-truth annotations to evaluate")
    pairs = []
    for a in gt_anns:
        p = preds.get(a["image_id"])
        if p is None:
            raise ValueError(f"{pred_json}: no prediction for image id {a['image_id']!r} ({a['file_name']})")
        # a size mismatch would otherwise surface as a bare numpy broadcasting error
        gs, ps = png_size(gt_dir / a["file_name"]), png_size(pred_dir / p["file_name"])
        if gs != ps:
            raise PanopticFormatError(
                f"{pred_dir / p['file_name']}: size {ps[1]}x{ps[0]} differs from the ground truth "
                f"{gt_dir / a['file_name']} ({gs[1]}x{gs[0]})"
            )
        pairs.append((a, p))

    workers = num_workers if num_workers is not None else _usable_cpus()
    workers = max(1, min(workers, len(pairs) // IMAGES_PER_WORKER))
    chunks = [pairs[i::workers] for i in range(workers)]
    jobs = [(k, chunk, str(gt_dir), str(pred_dir), categories) for k, chunk in enumerate(chunks)]
    try:
        if workers == 1:
            stats = [_pq_chunk(jobs[0])]
        else:
            # fork: the children need nothing but numpy/PIL and the arguments (no re-import cost)
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            with multiprocessing.get_context(method).Pool(workers) as pool:
                stats = pool.map(_pq_chunk, jobs)
    except KeyError as e:  # panopticapi reports bad predictions as KeyError('message')
        raise PanopticFormatError(f"{pred_json}: {e.args[0] if e.args else e}") from e
    total = PQStat()
    for s in stats:
        total += s

    summary: dict[str, float] = {}
    per_class: dict[str, dict] = {}
    for suffix, isthing in (("", None), ("_th", True), ("_st", False)):
        try:
            res, per = total.pq_average(categories, isthing=isthing)
        except ZeroDivisionError:  # panopticapi divides by the number of categories present: none
            res, per = {"n": 0}, {}
        for k in ("PQ", "SQ", "RQ"):
            summary[k + suffix] = 100.0 * res[k.lower()] if res["n"] else 0.0
        if isthing is None:
            for cid, r in per.items():
                st = total.pq_per_cat[cid]
                if st.tp + st.fp + st.fn == 0:
                    continue
                per_class[categories[cid]["name"]] = {
                    "category_id": cid,
                    "isthing": int(categories[cid]["isthing"]),
                    "PQ": 100.0 * r["pq"],
                    "SQ": 100.0 * r["sq"],
                    "RQ": 100.0 * r["rq"],
                }
    return summary, per_class


def panoptic_quality(
    gt_json: str | os.PathLike,
    gt_dir: str | os.PathLike,
    pred_json: str | os.PathLike,
    pred_dir: str | os.PathLike,
    *,
    image_ids: Sequence | None = None,
    num_workers: int | None = None,
) -> dict[str, float]:
    """``{PQ SQ RQ PQ_th SQ_th RQ_th PQ_st SQ_st RQ_st}`` in percent, computed by panopticapi.

    Every ground-truth image (or every one of ``image_ids``) needs a prediction. A group with no
    category to average (e.g. no stuff classes) scores 0.
    """
    return panoptic_quality_details(
        gt_json, gt_dir, pred_json, pred_dir, image_ids=image_ids, num_workers=num_workers
    )[0]
