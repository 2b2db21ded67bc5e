"""The demo's images: reading what the user gives, the model's copy, and pixel bookkeeping.

``image`` is a file path, a numpy array, a PIL image or a Gradio file dict. Reading goes through
cfnet's one image reader (:mod:`cfnet.image_io`, also used by the command line and the data
sets); conversions the user should know about (grayscale, alpha, 16-bit, downscaling) are
collected as warnings, and unreadable input raises :class:`app.errors.DemoError`.

Images whose longer side exceeds ``max_side`` are downscaled before the model sees them;
:class:`LoadedImage` maps pixels between the original image (what ``row``/``col`` refer to), the
processed copy and the enlarged display with the pixel-centre convention of
:mod:`cfnet.inspection`, so the point inspected is the one clicked.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.errors import DemoError
from cfnet import image_io
from cfnet.image_io import ImageReadError

DEFAULT_MAX_SIDE = image_io.DEFAULT_MAX_SIDE  # `cfnet predict --max-side` has the same default
MIN_SIDE = 8
# The UI shows small results enlarged by an integer factor up to this side (nearest neighbour,
# server-side: Gradio maps clicks to the natural pixels of the image it shows and assumes the
# browser never upscales it).
DISPLAY_MIN_SIDE = 512


@dataclass
class LoadedImage:
    """An input image ready for the model: RGB uint8 (downscaled to ``max_side`` if needed)."""

    array: np.ndarray  # h × w × 3 uint8, what the model sees
    original_size: tuple[int, int]  # (H, W) of the image the user gave (points refer to it)
    name: str
    warnings: list[str] = field(default_factory=list)
    key: str = ""

    @property
    def size(self) -> tuple[int, int]:
        return int(self.array.shape[0]), int(self.array.shape[1])

    @property
    def downscaled(self) -> bool:
        return self.size != self.original_size

    def to_processed(self, row: int, col: int) -> tuple[int, int]:
        """The processed-image pixel whose area holds the centre of original pixel ``(row, col)``."""
        (h, w), (oh, ow) = self.size, self.original_size
        return (min(h - 1, (2 * row + 1) * h // (2 * oh)), min(w - 1, (2 * col + 1) * w // (2 * ow)))

    def to_original(self, row: int, col: int, factor: int = 1) -> tuple[int, int]:
        """The original pixel holding the centre of processed pixel ``(row, col)``.

        With ``factor`` k, ``(row, col)`` is a pixel of the processed image enlarged k times (the
        UI's display, :meth:`display_factor`) — what a click on the shown result gives.
        """
        (h, w), (oh, ow) = self.size, self.original_size
        h, w = h * factor, w * factor
        row = min(max(int(row), 0), h - 1)
        col = min(max(int(col), 0), w - 1)
        return (min(oh - 1, (2 * row + 1) * oh // (2 * h)), min(ow - 1, (2 * col + 1) * ow // (2 * w)))

    @property
    def display_factor(self) -> int:
        """Integer enlargement the UI applies to results of small images (see DISPLAY_MIN_SIDE)."""
        return max(1, DISPLAY_MIN_SIDE // max(self.size))

    def to_display(self, image: np.ndarray | None) -> np.ndarray | None:
        """``image`` (processed size) enlarged by :attr:`display_factor`, nearest neighbour."""
        k = self.display_factor
        if image is None or k == 1:
            return image
        return np.repeat(np.repeat(image, k, axis=0), k, axis=1)


def _source_name(source: Any) -> str:
    if isinstance(source, (str, Path)):
        return Path(source).name
    if isinstance(source, Mapping):
        return str(source.get("orig_name") or Path(str(source.get("path", "image"))).name)
    return "the image"


def _content_errors(fn: Callable[..., np.ndarray], *args: Any, **kwargs: Any) -> np.ndarray:
    """Run a :mod:`cfnet.image_io` conversion; its errors become DemoError (the same words)."""
    try:
        return fn(*args, **kwargs)
    except ImageReadError as e:
        raise DemoError(str(e)) from None


def load_image(source: Any, max_side: int = DEFAULT_MAX_SIDE) -> LoadedImage:
    """Read ``source`` (path, numpy array, PIL image, or a Gradio file dict) as RGB uint8.

    Grayscale, palette, alpha (drawn over white), 16-bit and float images are converted, EXIF
    rotation applied, and an image whose longer side exceeds ``max_side`` is downscaled (Pillow's
    antialiased bilinear resize) — each with a warning. Unreadable input raises DemoError.
    """
    if source is None or (isinstance(source, str) and not source.strip()):
        raise DemoError("No image loaded: pick an example or upload an image first.")
    if not isinstance(max_side, int) or max_side < MIN_SIDE:
        raise DemoError(f"max_side must be an integer >= {MIN_SIDE}, got {max_side!r}.")
    name = _source_name(source)
    notes: list[str] = []
    if isinstance(source, Mapping):  # a Gradio FileData dict (API calls)
        source = source.get("path")
        if not source:
            raise DemoError("No image loaded: pick an example or upload an image first.")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DemoError(f"{name}: no such file.")
        # cfnet's one image reader (the command line and the data sets use it too)
        try:
            rgb = image_io.read_rgb(path, name=name, notes=notes, exif=True, max_side=max_side)
        except ImageReadError as e:
            if e.kind == "unidentified":
                raise DemoError(
                    f"{name}: not an image file Pillow can read (PNG, JPEG, WebP, BMP, TIFF, ...)."
                ) from None
            if e.kind == "corrupt":
                reason = str(e).split("corrupt or truncated", 1)[-1].strip(" ()")
                raise DemoError(f"{name}: the image file is corrupt or truncated ({reason}).") from None
            raise DemoError(str(e)) from None
        except (OSError, ValueError) as e:
            raise DemoError(f"{name}: the image file cannot be read ({e}).") from None
    elif isinstance(source, Image.Image):
        rgb = _content_errors(image_io.rgb_from_pil, source, name, notes)
    elif isinstance(source, np.ndarray):
        rgb = _content_errors(image_io.rgb_from_array, source, name, notes)
    else:
        raise DemoError(f"expected an image file, numpy array or PIL image, got {type(source).__name__}.")
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise DemoError(f"{name} is {h}×{w} pixels; the model needs at least {MIN_SIDE} pixels per side.")
    original = (h, w)
    if isinstance(source, (str, Path)):
        hh, hw = image_io.image_size(source)  # a large JPEG may have been decoded at reduced scale
        if max(hh, hw) > max(h, w):
            original = (hh, hw) if (hh > hw) == (h > w) else (hw, hh)  # (EXIF rotation applied)
    rgb, scaled = image_io.downscale(rgb, max_side, MIN_SIDE)
    if scaled or rgb.shape[:2] != original:
        oh, ow = original
        notes.append(
            f"{name} is {ow}×{oh} pixels; it was downscaled to {rgb.shape[1]}×{rgb.shape[0]} "
            f"(--max-side {max_side}). Clicks still refer to the original pixels."
        )
    digest = hashlib.sha1(np.ascontiguousarray(rgb).tobytes())
    digest.update(repr((original, rgb.shape)).encode())
    return LoadedImage(np.ascontiguousarray(rgb), original, name, notes, digest.hexdigest())


def to_tensor(array: np.ndarray):
    """The model's input for ``array`` (H×W×3 uint8): a 3×H×W float tensor in [0, 1]."""
    import torch

    return torch.tensor(array).permute(2, 0, 1).float().div_(255.0)  # a copy: the array may be read-only


def check_pixel(row: Any, col: Any, size: tuple[int, int]) -> tuple[int, int]:
    """``(row, col)`` as whole pixel indices inside an image of ``size``; DemoError otherwise."""
    out = []
    for name, v, n in (("row", row, size[0]), ("col", col, size[1])):
        if v is None or (isinstance(v, str) and not v.strip()):
            raise DemoError("No pixel chosen: click on the image (or enter row and col).")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise DemoError(f"{name} must be a pixel index, got {v!r}") from None
        if not math.isfinite(f) or f != int(f):
            raise DemoError(f"{name} must be a whole pixel index, got {v!r}")
        if not 0 <= f < n:
            raise DemoError(
                f"pixel ({row}, {col}) is outside the image, which is {size[0]} rows × {size[1]} columns "
                f"({name} must be in 0..{n - 1})."
            )
        out.append(int(f))
    return out[0], out[1]
