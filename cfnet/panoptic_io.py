"""COCO panoptic format on disk: segment id <-> RGB, panoptic PNGs, ``segments_info`` helpers.

A panoptic PNG stores one segment id per pixel as ``id = R + 256·G + 256²·B``; ``0`` is void.
``segments_info`` (one list per image in the JSON's ``annotations``) holds one record per segment:
``{"id", "category_id", "iscrowd", "area", "bbox"}`` for ground truth, ``{"id", "category_id",
"isthing", "score", "area"}`` for this project's predictions. Category ids here are always the
dataset's own ids (see :mod:`cfnet.categories`).

Used by the data layer, the evaluation, ``cfnet predict`` and the demo; it depends on numpy and
Pillow only. Every reader error names the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

VOID = 0
MAX_SEGMENT_ID = 256**3 - 1
# Fixed PNG writer settings: same array -> same bytes on every run (Pillow writes no time stamp).
PNG_SAVE_KWARGS = {"format": "PNG", "optimize": False, "compress_level": 6}


class PanopticFormatError(ValueError):
    """A panoptic file or record is malformed; the message names the file (and the field)."""


# ----------------------------------------------------------------------------------------------
# id <-> RGB


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """Segment ids (H, W) int64 of an (H, W, 3) RGB array: ``R + 256·G + 256²·B``."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"rgb2id: expected an (H, W, 3) array, got shape {rgb.shape}")
    rgb = rgb[..., :3].astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB encoding of segment ids (the inverse of :func:`rgb2id`)."""
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"id2rgb: expected an (H, W) id map, got shape {ids.shape}")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_SEGMENT_ID):
        raise ValueError(
            f"id2rgb: segment ids must lie in [0, {MAX_SEGMENT_ID}], got {ids.min()}..{ids.max()}"
        )
    rgb = np.empty(ids.shape + (3,), dtype=np.uint8)
    rgb[..., 0] = ids % 256
    rgb[..., 1] = (ids // 256) % 256
    rgb[..., 2] = ids // (256 * 256)
    return rgb


# ----------------------------------------------------------------------------------------------
# files


def read_panoptic_png(path: str | os.PathLike) -> np.ndarray:
    """The (H, W) int64 segment-id map of a panoptic PNG; a clear error for a missing/corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: panoptic PNG not found")
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated file fails here, not later
            mode = im.mode
            arr = np.asarray(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise PanopticFormatError(f"{path}: cannot decode panoptic PNG ({e})") from e
    if mode not in ("RGB", "RGBA"):
        raise PanopticFormatError(
            f"{path}: panoptic PNG must be RGB (id = R + 256·G + 256²·B), got image mode {mode!r}"
        )
    return rgb2id(arr)


def write_panoptic_png(path: str | os.PathLike, ids: np.ndarray) -> None:
    """Write an (H, W) segment-id map as an RGB PNG with fixed settings (deterministic bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(id2rgb(np.asarray(ids)), mode="RGB").save(path, **PNG_SAVE_KWARGS)


def png_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file from its header (cheap: no decoding)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise PanopticFormatError(f"{path}: cannot read image header ({e})") from e
    return h, w


class OutputPathError(ValueError):
    """An output path cannot be written (under a file, a read-only folder, ...); names the path."""


def describe_os_error(e: OSError) -> str:
    """``PATH: reason`` of an OSError (its own message when it names no file)."""
    if e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def prepare_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create folder ``path`` (and its parents) and check that files can be written into it.

    Raises :class:`OutputPathError` naming ``what`` (e.g. ``--out``) and the path otherwise.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path}: is a file, expected a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputPathError(f"{what} {path}: cannot create the folder, a file is in the way") from None
    except NotADirectoryError:
        raise OutputPathError(f"{what} {path}: cannot create the folder, it would be under a file") from None
    except OSError as e:
        raise OutputPathError(f"{what} {path}: cannot create the folder ({e.strerror or e})") from None
    _probe_writable(path, what, path)
    return path


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Check that file ``path`` can be written (creating its parent folders); OutputPathError if not."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path}: is a folder, expected a file name")
    try:
        prepare_output_dir(path.parent, what)
    except OutputPathError:
        raise OutputPathError(
            f"{what} {path}: its folder {path.parent} cannot be created or written"
        ) from None
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{what} {path}: the file is not writable")
    return path


def _probe_writable(folder: Path, what: str, shown: Path) -> None:
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
    except OSError as e:
        raise OutputPathError(f"{what} {shown}: the folder is not writable ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def dump_json(obj: object, path: str | os.PathLike) -> None:
    """JSON with fixed key order and separators, so a rerun writes the same bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(obj), indent=None, separators=(",", ":")) + "\n")


def _jsonable(obj: object) -> object:
    # numpy / torch scalars from model outputs are not JSON serialisable as they are
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "item") and hasattr(obj, "ndim") and obj.ndim == 0:  # 0-d torch tensor
        return obj.item()
    return obj


# ----------------------------------------------------------------------------------------------
# segments_info helpers


def segment_areas(ids: np.ndarray) -> dict[int, int]:
    """{segment id: pixel count} of the non-void segments of an id map."""
    uniq, counts = np.unique(np.asarray(ids), return_counts=True)
    return {int(u): int(c) for u, c in zip(uniq, counts) if u != VOID}


def segment_bbox(mask: np.ndarray) -> list[int]:
    """COCO ``[x, y, w, h]`` (integers) of a boolean mask; ``[0, 0, 0, 0]`` when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def check_segments(ids: np.ndarray, segments_info: Sequence[dict], where: str) -> dict[int, int]:
    """Check that the PNG's non-void ids and ``segments_info``'s ids are the same set.

    Returns the areas ``{id: pixels}``. ``where`` names the file in the error message.
    """
    areas = segment_areas(ids)
    listed = [int(s["id"]) for s in segments_info]
    dup = sorted({i for i in listed if listed.count(i) > 1})
    if dup:
        raise PanopticFormatError(f"{where}: segment ids {dup} appear more than once in segments_info")
    not_listed = sorted(set(areas) - set(listed))
    if not_listed:
        raise PanopticFormatError(
            f"{where}: segment ids {not_listed[:10]} are in the PNG but not in segments_info"
            + (f" (and {len(not_listed) - 10} more)" if len(not_listed) > 10 else "")
        )
    absent = sorted(set(listed) - set(areas))
    if absent:
        raise PanopticFormatError(f"{where}: segments_info ids {absent[:10]} do not occur in the PNG")
    return areas


def adjacent_segment_pairs(ids: np.ndarray) -> set[tuple[int, int]]:
    """Pairs ``(a, b)``, ``a < b``, of non-void segments that share a pixel edge (4-neighbourhood)."""
    ids = np.asarray(ids, dtype=np.int64)
    codes = []
    for a, b in ((ids[:, :-1], ids[:, 1:]), (ids[:-1, :], ids[1:, :])):
        sel = (a != b) & (a != VOID) & (b != VOID)
        a, b = a[sel], b[sel]
        codes.append(np.minimum(a, b) * (MAX_SEGMENT_ID + 1) + np.maximum(a, b))  # one int64 per pair
    uniq = np.unique(np.concatenate(codes))
    return {(int(c // (MAX_SEGMENT_ID + 1)), int(c % (MAX_SEGMENT_ID + 1))) for c in uniq}


def instances_from_panoptic(
    ids: np.ndarray, segments_info: Sequence[dict], categories
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thing instances of a panoptic map: ``(masks (K, H, W) bool, labels (K,) contiguous, iscrowd (K,))``.

    ``categories`` is a :class:`cfnet.categories.Categories`; stuff segments are left out.
    """
    ids = np.asarray(ids)
    masks, labels, crowd = [], [], []
    for s in segments_info:
        c = categories.contiguous(s["category_id"])
        if not categories.is_thing(c):
            continue
        masks.append(ids == int(s["id"]))
        labels.append(c)
        crowd.append(int(s.get("iscrowd", 0)))
    h, w = ids.shape
    if not masks:
        return np.zeros((0, h, w), bool), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.stack(masks), np.asarray(labels, np.int64), np.asarray(crowd, np.int64)


def semantic_from_panoptic(
    ids: np.ndarray, segments_info: Sequence[dict], categories, ignore_index: int = 255
) -> np.ndarray:
    """(H, W) int64 contiguous category per pixel; void and crowd pixels get ``ignore_index``."""
    ids = np.asarray(ids)
    uniq, inverse = np.unique(ids, return_inverse=True)
    info = {int(s["id"]): s for s in segments_info}
    lut = np.full(len(uniq), ignore_index, np.int64)
    for k, u in enumerate(uniq):
        s = info.get(int(u))
        if s is not None and not int(s.get("iscrowd", 0)):
            lut[k] = categories.contiguous(s["category_id"])
    return lut[inverse.reshape(ids.shape)]


def colorize_panoptic(
    ids: np.ndarray,
    segments_info: Iterable[dict],
    categories,
    *,
    boundaries: bool = True,
) -> np.ndarray:
    """(H, W, 3) uint8 picture of a panoptic map: stuff in its category colour, each thing instance a
    shade of its category colour (so touching same-class instances stay apart), void black,
    segment boundaries (optional) dark."""
    ids = np.asarray(ids)
    out = np.zeros(ids.shape + (3,), np.uint8)
    for k, s in enumerate(sorted(segments_info, key=lambda s: int(s["id"]))):
        c = categories.contiguous(s["category_id"])
        col = np.asarray(categories.color(c), np.float64)
        if categories.is_thing(c):
            # deterministic per-instance shade: alternate lighter/darker steps around the base colour
            step = ((k * 7) % 5 - 2) * 28.0
            col = np.clip(col + step, 0, 255)
        out[ids == int(s["id"])] = col.astype(np.uint8)
    if boundaries:
        edge = np.zeros(ids.shape, bool)
        edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
        edge[1:, :] |= ids[1:, :] != ids[:-1, :]
        out[edge] = (out[edge] * 0.35).astype(np.uint8)
    return out
