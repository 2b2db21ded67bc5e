"""``cfnet predict``: panoptic predictions for image files, in COCO panoptic results format.

    cfnet predict --checkpoint runs/tiny/model_final.pt img1.png img2.jpg photos/ --out preds/

writes, for every image ``NAME.ext``::

    preds/panoptic/NAME.png     segment ids as RGB (id = R + 256·G + 256²·B, 0 = void)
    preds/overlay/NAME.png      the image blended with the segment colours, outlined (cfnet.viz)
    preds/predictions.json      {"images", "annotations" (segments_info per image), "categories"}

``segments_info`` records carry ``id, category_id, isthing, score, area, bbox, iscrowd`` (dataset
category ids, as in ``cfnet.categories``). A folder argument stands for the images inside it. All
images are decoded before the model runs, so an unreadable or corrupt file fails at once with an
error naming it. The model resizes each image to ``model.input.min_size_test`` itself and returns
its outputs at the resolution it was given.

Large images get the demo's treatment: one whose longer side exceeds ``--max-side`` (default 1024,
as the demo) is downscaled to it before inference (JPEGs are decoded at a reduced scale, so memory
stays bounded), the command says so, and the outputs are at the downscaled size (the ``images``
record keeps ``original_height`` / ``original_width``). Images over
:data:`cfnet.image_io.MAX_PIXELS` (100 megapixels) are refused from their header, undecoded.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cfnet.engine.runtime import resolve_device
from cfnet.image_io import DEFAULT_MAX_SIDE, MAX_PIXELS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def expand_image_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders replaced by their image files (sorted). Missing paths are errors."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
            if not found:
                raise FileNotFoundError(f"{p}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: image not found")
    if not out:
        raise ValueError("no images given")
    return out


def load_image(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB (:func:`cfnet.image_io.read_rgb`, the reader of the data sets and the
    demo), the longer side brought down to ``max_side`` if given; an error naming the file if it
    cannot be decoded or is over :data:`cfnet.image_io.MAX_PIXELS`."""
    from cfnet.image_io import downscale, read_rgb

    try:
        image = read_rgb(path, max_side=max_side)
    except (OSError, ValueError) as e:
        msg = str(e)
        raise ValueError(msg if str(path) in msg else f"{path}: cannot read image ({msg})") from None
    return downscale(image, max_side)[0] if max_side is not None else image


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 H×W×3 -> float 3×H×W in [0, 1] (the model's input)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    """One output name per input, all different: the stem, or ``stem_k`` for a repeated stem.

    Two inputs called a/x.png and b/x.jpg must not overwrite each other's outputs, and the suffixed
    name must not be the stem of another input either (``x.png x.jpg x_1.png``).
    """
    all_stems = {p.stem for p in paths}
    taken: set[str] = set()
    names = []
    for p in paths:
        name, k = p.stem, 1
        while name in taken or (name != p.stem and name in all_stems):
            name, k = f"{p.stem}_{k}", k + 1
        taken.add(name)
        names.append(name)
    return names


def segments_for_json(panoptic_seg: np.ndarray, segments_info: Sequence[dict]) -> list[dict]:
    """The model's ``segments_info`` with plain types plus COCO's ``bbox`` and ``iscrowd``."""
    from cfnet.panoptic_io import segment_bbox

    out = []
    for s in segments_info:
        mask = panoptic_seg == int(s["id"])
        out.append(
            {
                "id": int(s["id"]),
                "category_id": int(s["category_id"]),
                "isthing": int(bool(s["isthing"])),
                "score": float(s.get("score", 1.0)),
                "area": int(mask.sum()),
                "bbox": segment_bbox(mask),
                "iscrowd": 0,
            }
        )
    return out


@torch.no_grad()
def predict_images(
    model: torch.nn.Module,
    images: Sequence[str | Path],
    out_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
    overlays: bool = True,
    max_side: int | None = None,
    on_note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``model`` on image files and write PNGs, overlays and ``predictions.json`` to ``out_dir``.

    Returns the predictions JSON (a dict). ``model`` is a CFNet (``model.categories`` names the
    classes); it is put in eval mode on ``device``. With ``max_side``, an image whose longer side
    is larger is downscaled to it first and its outputs are at that size (the ``images`` record
    keeps ``original_height`` / ``original_width``); ``on_note`` is told about each such image.
    """
    from tqdm.auto import tqdm

    from cfnet.image_io import image_size
    from cfnet.panoptic_io import dump_json, prepare_output_dir, write_panoptic_png
    from cfnet.viz import panoptic_overlay

    paths = expand_image_paths(images)
    # All up front: a bad file fails before any work. Downscaled to max_side, each image is small.
    originals = [image_size(p) for p in paths]
    decoded = [load_image(p, max_side) for p in paths]
    for path, (oh, ow), image in zip(paths, originals, decoded):
        if image.shape[:2] != (oh, ow) and on_note is not None:
            on_note(
                f"{path}: {ow}×{oh} pixels, downscaled to {image.shape[1]}×{image.shape[0]} for inference "
                f"(--max-side {max_side}); its outputs are at that size"
            )
    stems = _unique_stems(paths)
    categories = model.categories
    model.to(device).eval()
    out_dir = prepare_output_dir(out_dir, "output folder")
    prepare_output_dir(out_dir / "panoptic", "output folder")
    if overlays:
        prepare_output_dir(out_dir / "overlay", "output folder")
    result: dict[str, Any] = {"images": [], "annotations": [], "categories": categories.to_json()}
    for path, image, stem, (oh, ow) in tqdm(
        list(zip(paths, decoded, stems, originals)), desc="predict", disable=not progress, dynamic_ncols=True
    ):
        out = model([to_tensor(image).to(device)])[0]
        seg = out["panoptic_seg"].cpu().numpy().astype(np.int64)
        info = segments_for_json(seg, out["segments_info"])
        png_name = f"{stem}.png"
        write_panoptic_png(out_dir / "panoptic" / png_name, seg)
        if overlays:
            from PIL import Image

            overlay = panoptic_overlay(image, seg, info, categories)
            Image.fromarray(overlay).save(out_dir / "overlay" / png_name)
        h, w = seg.shape
        record = {"id": stem, "file_name": path.name, "height": h, "width": w, "path": str(path)}
        if (h, w) != (oh, ow):
            record.update(original_height=oh, original_width=ow)
        result["images"].append(record)
        result["annotations"].append({"image_id": stem, "file_name": png_name, "segments_info": info})
    dump_json(result, out_dir / "predictions.json")
    return result


# ----------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", default="default", help="checkpoint file (default: the shipped shapes-tiny model)"
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-overlay", action="store_true", help="skip the overlay PNGs")
    parser.add_argument(
        "--max-side",
        type=int,
        default=DEFAULT_MAX_SIDE,
        help="images with a longer side are downscaled to it for inference; outputs are at that size "
        f"(default: %(default)s, as the demo; images over {MAX_PIXELS // 1_000_000} megapixels are refused)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from cfnet.checkpoint import CheckpointError, load_checkpoint
    from cfnet.panoptic_io import describe_os_error, prepare_output_dir

    try:
        prepare_output_dir(args.out, "--out")  # before any work: a bad path fails at once
        paths = expand_image_paths(args.images)
        device = resolve_device(args.device)
        model, _, _ = load_checkpoint(args.checkpoint, device=device)
        if args.max_side < 8:
            raise ValueError(f"--max-side: expected an integer >= 8, got {args.max_side}")
        result = predict_images(
            model, paths, args.out, device=device, progress=not args.no_progress,
            overlays=not args.no_overlay, max_side=args.max_side,
            on_note=lambda m: print(f"cfnet predict: {m}", file=sys.stderr),
        )  # fmt: skip
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"cfnet predict: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a write that failed mid-way (disk full, ...)
        print(f"cfnet predict: cannot write {describe_os_error(e)}", file=sys.stderr)
        return 1
    n = sum(len(a["segments_info"]) for a in result["annotations"])
    print(f"{len(result['annotations'])} images, {n} segments -> {Path(args.out) / 'predictions.json'}")
    return 0
