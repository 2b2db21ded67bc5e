"""Reading COCO-panoptic-format splits: COCO, ADE20k-panoptic, the synthetic ``shapes`` set.

Accepted layouts (:data:`LAYOUTS`; :func:`resolve_split` turns any of them into
``(image_dir, png_dir, json_path)``, :func:`resolve_splits` a training folder into its train and
val splits):

* the project's own split folder (what ``cfnet data shapes`` and ``cfnet predict`` write)::

      split/images/*.png|jpg   split/panoptic/*.png   split/panoptic.json

  (``root`` may also be a folder holding such splits, chosen with ``split="train"``);
* COCO's layout: ``root/val2017/``, ``root/annotations/panoptic_val2017.json``,
  ``root/annotations/panoptic_val2017/`` (``split="val2017"``, or point at the JSON);
* ADE20k-panoptic converted to COCO format (detectron2's ``prepare_ade20k_panoptic``):
  ``root/images/validation/``, ``root/ade20k_panoptic_val.json``, ``root/ade20k_panoptic_val/``
  (``split="val"`` or ``"validation"``, or point at the JSON).

The JSON's categories define the dataset's classes unless a :class:`~cfnet.categories.Categories`
is given (then every category id in the JSON must be one of them, with the same ``isthing``).

Bad data is an error that names the file and the problem, never a silent skip: the JSON's fields
are checked when the dataset is built; an item's files (image present and decodable, PNG ids equal
to ``segments_info`` ids, sizes equal) when it is loaded; :meth:`PanopticDataset.check_files`
checks every item cheaply up front (files there, header sizes, nothing listed twice; what ``cfnet
train`` and ``cfnet eval`` do first) and :meth:`PanopticDataset.validate` decodes every item.
EXIF orientation is not applied: COCO's panoptic PNGs are aligned with the
stored pixel grid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from cfnet.categories import IGNORE_INDEX, Categories
from cfnet.panoptic_io import PanopticFormatError, check_segments, read_panoptic_png


class CategoryMismatch(PanopticFormatError):
    """A split's categories are not those a model (or the caller) expects.

    ``json_path`` and ``json_categories`` (the split's own :class:`Categories`) let the caller say
    which data sets clash."""

    def __init__(self, message: str, json_path: Path | None = None, json_categories: Any = None):
        super().__init__(message)
        self.json_path, self.json_categories = json_path, json_categories


class SplitPaths(NamedTuple):
    image_dir: Path
    png_dir: Path
    json_path: Path


@dataclass(frozen=True)
class SplitLayout:
    """Where one dataset family keeps a split, as path patterns relative to the dataset root.

    ``json`` is the panoptic JSON with a ``{split}`` placeholder in its last or in a folder
    component (``"annotations/panoptic_{split}.json"``); ``images`` the image folder
    (``"{split}"``), where ``{split}`` is first renamed through ``image_split_names``.
    ``split_aliases`` are other names one may ask for a split by (``val`` → ``validation``);
    ``train_splits`` / ``val_splits`` the split names ``cfnet train --data ROOT`` picks.
    ``needs_png_folder`` counts a JSON as a split only where its PNG folder (the JSON's path
    without ``.json``) exists. The PNGs are in the JSON's path without ``.json`` or in a
    ``panoptic/`` folder beside it, for every layout.
    """

    json: str
    images: str
    train_splits: tuple[str, ...] = ()
    val_splits: tuple[str, ...] = ()
    image_split_names: Mapping[str, str] = field(default_factory=dict)
    split_aliases: Mapping[str, str] = field(default_factory=dict)
    needs_png_folder: bool = False

    def _parts(self) -> list[str]:
        return self.json.split("/")

    def split_of(self, json_path: Path) -> tuple[str, Path] | None:
        """``(split, dataset root)`` if ``json_path`` follows this layout, else None."""
        parts = self._parts()
        path_parts = json_path.parts[-len(parts) :]
        if len(path_parts) != len(parts):
            return None
        split = None
        for pattern, actual in zip(parts, path_parts):
            head, sep, tail = pattern.partition("{split}")
            if not sep:
                if actual != pattern:
                    return None
                continue
            fits = actual.startswith(head) and actual.endswith(tail)
            if not fits or len(actual) <= len(head) + len(tail):
                return None
            split = actual[len(head) : len(actual) - len(tail)]
        return (split, json_path.parents[len(parts) - 1]) if split is not None else None

    def json_for(self, root: Path, split: str) -> Path:
        return root / self.json.format(split=split)

    def image_dir(self, root: Path, split: str) -> Path:
        return root / self.images.format(split=self.image_split_names.get(split, split))

    def find(self, root: Path) -> dict[str, Path]:
        """``{split: json}`` of the splits of this layout under ``root``."""
        found = {}
        for j in sorted(root.glob(self.json.format(split="*"))):
            match = self.split_of(j)
            if match and j.is_file() and (not self.needs_png_folder or j.with_suffix("").is_dir()):
                found[match[0]] = j
        return found


LAYOUTS: dict[str, SplitLayout] = {
    # the project's own split folder (what `cfnet data shapes` and `cfnet predict` write; custom data)
    "split-folder": SplitLayout("{split}/panoptic.json", "{split}/images", ("train",), ("val",)),
    # COCO: annotations/panoptic_val2017.json + annotations/panoptic_val2017/ + val2017/
    "coco": SplitLayout(
        "annotations/panoptic_{split}.json", "{split}", ("train2017",), ("val2017",), needs_png_folder=True
    ),
    # ADE20k-panoptic in COCO format (detectron2's prepare_ade20k_panoptic): ade20k_panoptic_val.json
    # + ade20k_panoptic_val/ + images/validation/
    "ade20k": SplitLayout(
        "ade20k_panoptic_{split}.json",
        "images/{split}",
        ("training",),
        ("validation",),
        image_split_names={"val": "validation", "train": "training"},
        split_aliases={"val": "validation", "train": "training"},
    ),
}
"""Dataset layouts by name, in the order they are tried; add one to read another family's folders."""


def split_names(role: str) -> tuple[str, ...]:
    """The split names ``role`` (``"train"`` or ``"val"``) goes by in :data:`LAYOUTS`, in order."""
    names = [n for layout in LAYOUTS.values() for n in getattr(layout, f"{role}_splits")]
    return tuple(dict.fromkeys(names))


def _split_aliases(split: str) -> list[str]:
    names = [split]
    for layout in LAYOUTS.values():
        names += [v for k, v in layout.split_aliases.items() if k == split]
        names += [k for k, v in layout.split_aliases.items() if v == split]
    return list(dict.fromkeys(names))


def _paths_for_json(json_path: Path) -> SplitPaths:
    """Image and PNG folders that belong to a panoptic JSON, by the conventions of each layout."""
    png_candidates = [json_path.with_suffix(""), json_path.parent / "panoptic"]
    image_candidates = []
    for layout in LAYOUTS.values():
        match = layout.split_of(json_path)
        if match:
            image_candidates.append(layout.image_dir(match[1], match[0]))
    image_candidates = list(dict.fromkeys([*image_candidates, json_path.parent / "images"]))
    png_dir = next((p for p in png_candidates if p.is_dir()), None)
    if png_dir is None:
        raise FileNotFoundError(
            f"{json_path}: no panoptic PNG folder found (looked for {', '.join(map(str, png_candidates))})"
        )
    image_dir = next((p for p in image_candidates if p.is_dir()), None)
    if image_dir is None:
        raise FileNotFoundError(
            f"{json_path}: no image folder found (looked for {', '.join(map(str, image_candidates))})"
        )
    return SplitPaths(image_dir, png_dir, json_path)


def find_splits(root: str | os.PathLike) -> dict[str, Path]:
    """{split name: json} of every split found under a dataset root (any of :data:`LAYOUTS`)."""
    root = Path(root)
    found: dict[str, Path] = {}
    for layout in LAYOUTS.values():
        found.update(layout.find(root))
    return found


def resolve_split(root: str | os.PathLike, split: str | None = None) -> SplitPaths:
    """``(image_dir, png_dir, json_path)`` of a split given its folder, its JSON, or a dataset root
    plus ``split`` (see the module docstring and :data:`LAYOUTS` for the layouts)."""
    root = Path(root)
    if root.suffix == ".json" or root.is_file():
        if not root.is_file():
            raise FileNotFoundError(f"{root}: panoptic JSON not found")
        return _paths_for_json(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder or panoptic JSON")
    if split is None and (root / "panoptic.json").is_file():
        return _paths_for_json(root / "panoptic.json")
    found = find_splits(root)
    if split is not None:
        for name in _split_aliases(split):
            if name in found:
                return _paths_for_json(found[name])
        looked = ", ".join(str(layout.json_for(root, split)) for layout in LAYOUTS.values())
        raise FileNotFoundError(
            f"{root}: no split {split!r} (looked for {looked}); splits found: {', '.join(found) or 'none'}"
        )
    if len(found) == 1:
        return _paths_for_json(next(iter(found.values())))
    if not found:
        expected = ", ".join(layout.json.replace("{split}", "<split>") for layout in LAYOUTS.values())
        raise FileNotFoundError(
            f"{root}: not a panoptic split "
            f"(expected panoptic.json + images/ + panoptic/, or one of {expected})"
        )
    raise ValueError(f"{root}: holds several splits ({', '.join(found)}); choose one with split=...")


def resolve_splits(data_dir: str | os.PathLike) -> tuple[Path, Path | None]:
    """``(train split, val split or None)`` of ``--data``.

    ``DIR`` may hold ``train/`` (+ ``val/``) split folders, be a dataset root in COCO's layout
    (``annotations/panoptic_train2017.json`` + ``val2017``) or ADE20k's
    (``ade20k_panoptic_train.json`` + ``val``), or be a single split; the returned paths are
    anything :class:`PanopticDataset` reads (a split folder or its JSON).
    """
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise FileNotFoundError(f"--data {data_dir}: no such folder")
    if (data_dir / "train").is_dir():
        val = data_dir / "val"
        return data_dir / "train", (val if val.is_dir() else None)
    found = find_splits(data_dir) if data_dir.is_dir() else {}
    # the split names of every layout in LAYOUTS: train, train2017, training, ...
    train_split = next((found[k] for k in split_names("train") if k in found), None)
    if train_split is not None:
        val_split = next((found[k] for k in split_names("val") if k in found), None)
        return train_split, val_split
    return data_dir, None


# ----------------------------------------------------------------------------------------------
# JSON


def _is_int(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def load_panoptic_json(path: str | os.PathLike) -> dict:
    """Parse and check a COCO panoptic JSON (fields, types, references); errors name the file and
    the field. Returns the parsed dict."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: panoptic JSON not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PanopticFormatError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise PanopticFormatError(f"{path}: expected a JSON object at top level")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise PanopticFormatError(f"{path}: missing or non-list field {key!r}")

    checks = {
        "int": _is_int,
        "pos": lambda v: _is_int(v) and v > 0,
        "str": lambda v: isinstance(v, str) and v != "",
        "list": lambda v: isinstance(v, list),
        "id": lambda v: _is_int(v) or (isinstance(v, str) and v != ""),
        "flag": lambda v: _is_int(v) and v in (0, 1),
    }

    def need(rec: Any, fields: dict[str, str], where: str) -> None:
        if not isinstance(rec, dict):
            raise PanopticFormatError(f"{path}: {where} is not an object")
        for f, kind in fields.items():
            if f not in rec:
                raise PanopticFormatError(f"{path}: {where} has no {f!r} field")
            if not checks[kind](rec[f]):
                raise PanopticFormatError(f"{path}: {where}: field {f!r} has invalid value {rec[f]!r}")

    for i, c in enumerate(data["categories"]):
        need(c, {"id": "int", "name": "str", "isthing": "flag"}, f"categories[{i}]")
    try:
        cats = Categories(data["categories"])
    except ValueError as e:
        raise PanopticFormatError(f"{path}: {e}") from e

    cat_ids = {r["id"] for r in cats.records}
    images = {}
    for i, im in enumerate(data["images"]):
        need(im, {"id": "id", "file_name": "str", "height": "pos", "width": "pos"}, f"images[{i}]")
        if im["id"] in images:
            raise PanopticFormatError(f"{path}: images[{i}]: image id {im['id']!r} appears twice")
        images[im["id"]] = im
    annotated = set()
    for i, ann in enumerate(data["annotations"]):
        need(ann, {"image_id": "id", "file_name": "str", "segments_info": "list"}, f"annotations[{i}]")
        where = f"annotations[{i}] ({ann['file_name']})"
        if ann["image_id"] not in images:
            raise PanopticFormatError(
                f"{path}: {where}: image_id {ann['image_id']!r} has no entry in 'images'"
            )
        if ann["image_id"] in annotated:
            raise PanopticFormatError(f"{path}: {where}: image_id {ann['image_id']!r} is annotated twice")
        annotated.add(ann["image_id"])
        for j, s in enumerate(ann["segments_info"]):
            # fast path for the common well-formed record (COCO train has 1.7 M of them)
            if (
                type(s) is dict
                and type(s.get("id")) is int
                and 0 < s["id"] < 256**3
                and type(s.get("category_id")) is int
                and s["category_id"] in cat_ids
                and s.get("iscrowd") in (0, 1)
            ):
                continue
            need(s, {"id": "pos", "category_id": "int", "iscrowd": "flag"}, f"{where} segments_info[{j}]")
            if s["id"] >= 256**3:
                raise PanopticFormatError(f"{path}: {where} segments_info[{j}]: id {s['id']} >= 256^3")
            if s["category_id"] not in cats:
                raise PanopticFormatError(
                    f"{path}: {where} segments_info[{j}] (segment {s['id']}): unknown category id "
                    f"{s['category_id']} (not in the JSON's categories)"
                )
    missing = [im["file_name"] for k, im in images.items() if k not in annotated]
    if missing:
        raise PanopticFormatError(
            f"{path}: {len(missing)} image(s) have no annotation, e.g. {missing[:3]} "
            "(a panoptic split needs one annotation per image)"
        )
    return data


# ----------------------------------------------------------------------------------------------
# images


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, by :func:`cfnet.image_io.read_rgb` (the reader the
    command line and the demo use too: grayscale / palette / alpha / 16-bit / float converted).
    A missing, undecodable (e.g. truncated) or oversized file is an error naming it."""
    from cfnet.image_io import read_rgb

    return read_rgb(path)


# ----------------------------------------------------------------------------------------------
# the dataset


class PanopticDataset(torch.utils.data.Dataset):
    """A COCO-panoptic-format split as ``(image, target)`` pairs.

    ``image``: float (3, H, W) RGB in [0, 1]. ``target``:

    * ``masks`` (K, H, W) bool and ``labels`` (K,) int64: the non-crowd *thing* instances,
      labels as contiguous thing ids (``0 .. T-1``);
    * ``crowd_masks`` (C, H, W) bool and ``crowd_labels`` (C,): crowd thing regions (for mask AP);
    * ``sem_seg`` (H, W) int64: contiguous ids over things + stuff, void and crowd = 255;
    * ``image_id``, ``file_name`` (the image's), ``height``, ``width`` (original size).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        split: str | None = None,
        categories: Categories | None = None,
        transforms=None,
    ):
        self.image_dir, self.png_dir, self.json_path = resolve_split(root, split)
        data = load_panoptic_json(self.json_path)
        json_cats = Categories(data["categories"])
        if categories is None:
            categories = json_cats
        else:
            for rec in json_cats.records:
                if rec["id"] not in categories:
                    raise CategoryMismatch(
                        f"{self.json_path}: category id {rec['id']} ({rec['name']!r}) is not one of the "
                        f"given categories ({categories.num_classes} classes)",
                        self.json_path,
                        json_cats,
                    )
                if categories.is_thing(categories.contiguous(rec["id"])) != bool(rec["isthing"]):
                    raise CategoryMismatch(
                        f"{self.json_path}: category id {rec['id']} ({rec['name']!r}) has isthing="
                        f"{rec['isthing']}, but the given categories disagree",
                        self.json_path,
                        json_cats,
                    )
        self.categories = categories
        self.transforms = transforms
        images = {im["id"]: im for im in data["images"]}
        self._items = [(images[a["image_id"]], a) for a in data["annotations"]]

    def __len__(self) -> int:
        return len(self._items)

    def image_info(self, index: int) -> dict:
        """The image's JSON record plus ``image_path``, ``png_path`` and its ``segments_info``."""
        image, ann = self._items[index]
        return dict(
            image,
            image_path=self.image_dir / image["file_name"],
            png_path=self.png_dir / ann["file_name"],
            segments_info=ann["segments_info"],
        )

    def load_panoptic(self, index: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """Checked raw data of one item: ``(image (H, W, 3) uint8, segment ids (H, W) int64,
        segments_info)``."""
        image_rec, ann = self._items[index]
        image_path = self.image_dir / image_rec["file_name"]
        png_path = self.png_dir / ann["file_name"]
        if not image_path.is_file():
            raise FileNotFoundError(f"{image_path}: image not found (listed in {self.json_path})")
        if not png_path.is_file():
            raise FileNotFoundError(f"{png_path}: panoptic PNG not found (listed in {self.json_path})")
        image = read_image(image_path)
        ids = read_panoptic_png(png_path)
        size = (int(image_rec["height"]), int(image_rec["width"]))
        if image.shape[:2] != ids.shape:
            raise PanopticFormatError(
                f"{png_path}: size {ids.shape[1]}x{ids.shape[0]} differs from its image {image_path} "
                f"({image.shape[1]}x{image.shape[0]})"
            )
        if ids.shape != size:
            raise PanopticFormatError(
                f"{png_path}: size {ids.shape[1]}x{ids.shape[0]} differs from the JSON's "
                f"width x height {size[1]}x{size[0]} ({self.json_path})"
            )
        check_segments(ids, ann["segments_info"], where=str(png_path))
        return image, ids, ann["segments_info"]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        image_rec, ann = self._items[index]
        image, ids, segments_info = self.load_panoptic(index)
        target = self._target(ids, segments_info)
        target.update(
            image_id=image_rec["id"],
            file_name=image_rec["file_name"],
            height=int(image_rec["height"]),
            width=int(image_rec["width"]),
        )
        img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
        if self.transforms is not None:
            img, target = self.transforms(img, target)
        return img, target

    def _target(self, ids: np.ndarray, segments_info: Sequence[dict]) -> dict:
        # one np.unique pass gives every segment's pixels; masks and sem_seg are lookups into it
        uniq, inverse = np.unique(ids, return_inverse=True)
        inverse = inverse.reshape(ids.shape)
        info = {int(s["id"]): s for s in segments_info}
        sem_lut = np.full(len(uniq), IGNORE_INDEX, np.int64)
        things, crowd = [], []
        for k, u in enumerate(uniq):
            s = info.get(int(u))
            if s is None:  # void (check_segments guarantees every other id is listed)
                continue
            c = self.categories.contiguous(s["category_id"])
            if int(s["iscrowd"]):
                if self.categories.is_thing(c):
                    crowd.append((k, c))
                continue
            sem_lut[k] = c
            if self.categories.is_thing(c):
                things.append((k, c))

        def stack(pairs: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
            ks = np.asarray([k for k, _ in pairs], np.int64)
            masks = inverse[None] == ks[:, None, None] if pairs else np.zeros((0,) + ids.shape, bool)
            return torch.from_numpy(masks), torch.as_tensor([c for _, c in pairs], dtype=torch.int64)

        masks, labels = stack(things)
        crowd_masks, crowd_labels = stack(crowd)
        return {
            "masks": masks,
            "labels": labels,
            "crowd_masks": crowd_masks,
            "crowd_labels": crowd_labels,
            "sem_seg": torch.from_numpy(sem_lut[inverse]),
        }

    def check_files(self, progress: bool = False) -> None:
        """Cheap up-front check of the whole split, without decoding any image: every image and
        PNG is there, its header size is the JSON's (and within the pixel limit), and no image or
        PNG file is listed twice. One error listing every problem found (up to 20); image ids and
        the JSON's fields were checked when the dataset was built. :meth:`validate` decodes."""
        from cfnet.image_io import image_size

        errors: list[str] = []
        images: dict[str, Any] = {}
        pngs: dict[str, Any] = {}
        for i in tqdm(range(len(self)), desc=f"checking {self.json_path.name}", disable=not progress):
            image_rec, ann = self._items[i]
            listed = ((images, image_rec["file_name"], "image"), (pngs, ann["file_name"], "PNG"))
            for seen, name, what in listed:
                if name in seen:
                    errors.append(
                        f"{what} file {name!r} is listed twice (image ids {seen[name]!r} and "
                        f"{image_rec['id']!r})"
                    )
                seen.setdefault(name, image_rec["id"])
            size = (int(image_rec["height"]), int(image_rec["width"]))
            for path, what in ((self.image_dir / image_rec["file_name"], "image"),
                               (self.png_dir / ann["file_name"], "panoptic PNG")):  # fmt: skip
                try:
                    h, w = image_size(path)
                except FileNotFoundError:
                    errors.append(f"{path}: {what} not found")
                    continue
                except (OSError, ValueError) as e:
                    errors.append(str(e))
                    continue
                if (h, w) != size:
                    errors.append(
                        f"{path}: size {w}x{h} differs from the JSON's width x height {size[1]}x{size[0]}"
                    )
                elif what == "image":
                    from cfnet.image_io import check_pixel_limit

                    try:
                        check_pixel_limit((h, w), str(path))
                    except ValueError as e:
                        errors.append(str(e))
        if len(errors) == 1:
            raise PanopticFormatError(
                f"{self.json_path}: {errors[0]} (the split is checked before any work; skip with "
                "--no-check-data)"
            )
        if errors:
            more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
            raise PanopticFormatError(
                f"{self.json_path}: {len(errors)} problems found in the split (checked before any "
                "work; skip with --no-check-data):\n  " + "\n  ".join(errors[:20]) + more
            )

    def validate(self, progress: bool = True) -> None:
        """Load and check every item now; one error listing every bad file (up to 20)."""
        errors = []
        for i in tqdm(range(len(self)), desc=f"checking {self.json_path.name}", disable=not progress):
            try:
                self.load_panoptic(i)
            except (OSError, ValueError, KeyError) as e:
                errors.append(str(e))
        if errors:
            more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
            raise PanopticFormatError(
                f"{self.json_path}: {len(errors)} of {len(self)} items are bad:\n  "
                + "\n  ".join(errors[:20])
                + more
            )

    def __repr__(self) -> str:
        return (
            f"PanopticDataset({str(self.json_path)!r}, {len(self)} images, "
            f"{self.categories.num_things} things + {self.categories.num_stuff} stuff)"
        )


def collate(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """Batch as lists (images differ in size; the model pads them)."""
    images = [b[0] for b in batch]
    targets = [b[1] for b in batch]
    return images, targets
