"""The one image reader: ``cfnet predict``, the data sets (train / eval) and the demo all use it.

    rgb = read_rgb("photo.tif")                    # (H, W, 3) uint8 RGB
    rgb = read_rgb("huge.jpg", max_side=1024)      # bounded memory: JPEGs decode at reduced scale
    small, scaled = downscale(rgb, 1024)           # the longer side at most 1024 (bilinear)

Every pixel type becomes 8-bit RGB on its dtype's usual scale, the same way everywhere: 16-bit
data (``I;16`` PNGs, and ``I`` / 32-bit images whose values fit 16 bits) as ``round(v / 257)``,
floats in [0, 1] as ``round(v · 255)``, other ranges rescaled; grayscale repeated to RGB; alpha
drawn over white; palette and CMYK converted. What was converted is collected as human-readable
``notes`` for callers that show them (the demo does).

Images above :data:`MAX_PIXELS` are refused from the header, before any decoding (Pillow would
raise its ``DecompressionBombError`` further up, or decode gigabytes). EXIF rotation is applied
only when asked (the demo shows images as a browser does; COCO's panoptic PNGs are aligned with
the stored pixel grid, so the data sets do not). Errors are :class:`ImageReadError` (a
``ValueError``) naming the file, with a ``kind`` (``"unidentified"``, ``"corrupt"``,
``"too_large"``, ``"content"``) for callers that word them their own way.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cfnet.panoptic_io import PanopticFormatError

DEFAULT_MAX_SIDE = 1024  # the longer side the demo and `cfnet predict` downscale to
MAX_PIXELS = 100_000_000  # refused above this (from the header, before decoding)


class ImageReadError(PanopticFormatError):
    """An image file that cannot be used; the message names it, ``kind`` says why."""

    def __init__(self, message: str, kind: str = "content"):
        super().__init__(message)
        self.kind = kind


# ----------------------------------------------------------------------------------------------
# pixel conversions


def to_uint8(arr: np.ndarray, name: str, notes: list[str]) -> np.ndarray:
    """Any numeric H×W[×C] array to uint8 on the usual scale of its dtype."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16 or (
        np.issubdtype(arr.dtype, np.integer)
        and arr.size
        and arr.min() >= 0
        and arr.max() <= 65535
        and arr.max() > 255
    ):
        notes.append(f"{name} has 16 bits per channel; it was converted to 8 bits (value / 257).")
        return np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            notes.append(f"{name} has values outside 0..255; they were rescaled to 0..255.")
            lo, hi = float(arr.min()), float(arr.max())
            return np.round((arr - lo) / max(hi - lo, 1.0) * 255).astype(np.uint8)
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise ImageReadError(f"{name} holds NaN or infinite values.")
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            if arr.min() >= 0 and arr.max() <= 255:
                return np.round(arr).astype(np.uint8)
            notes.append(f"{name} has float values outside [0, 1]; they were rescaled to 0..255.")
            lo, hi = float(arr.min()), float(arr.max())
            return np.round((arr - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)
        return np.round(arr * 255).astype(np.uint8)
    raise ImageReadError(f"{name}: unsupported pixel type {arr.dtype}.")


def rgb_from_array(arr: np.ndarray, name: str, notes: list[str]) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an H×W, H×W×1, H×W×2 (gray + alpha), H×W×3 or H×W×4 array."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        notes.append(f"{name} is grayscale; it was converted to RGB.")
        arr = to_uint8(arr, name, notes)
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (2, 3, 4):
        raise ImageReadError(
            f"{name}: expected an H×W, H×W×3 or H×W×4 image, got an array of shape {arr.shape}."
        )
    arr = to_uint8(arr, name, notes)
    if arr.shape[2] == 2:  # gray + alpha
        arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=2), arr[..., 1:]], axis=2)
        notes.append(f"{name} is grayscale; it was converted to RGB.")
    if arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float64) / 255.0
        if (alpha < 1).any():
            notes.append(f"{name} has an alpha channel; transparent parts were drawn over white.")
        arr = np.round(arr[..., :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    return np.array(arr[..., :3])  # a writable, contiguous copy (torch.from_numpy needs one)


def rgb_from_pil(im: Image.Image, name: str, notes: list[str], *, exif: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a PIL image (first frame; EXIF rotation applied if ``exif``)."""
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)
        notes.append(f"{name} has several frames; the first one is used.")
    im.load()
    if exif:
        try:
            im = ImageOps.exif_transpose(im)  # what a browser shows
        except Exception:  # noqa: BLE001 - a broken EXIF block must not stop reading
            pass
    mode = im.mode
    if mode in ("RGB", "L", "RGBA", "LA") or mode.startswith("I") or mode == "F":
        return rgb_from_array(np.asarray(im), name, notes)
    if mode in ("P", "PA"):
        return rgb_from_array(np.asarray(im.convert("RGBA")), name, notes)
    if mode == "1":
        notes.append(f"{name} is black-and-white; it was converted to RGB.")
        return np.repeat((np.asarray(im, dtype=np.uint8) * 255)[..., None], 3, axis=2)
    notes.append(f"{name} is in {mode} colours; it was converted to RGB.")
    return np.array(im.convert("RGB"))


# ----------------------------------------------------------------------------------------------
# files


def _size_past_bomb_check(path: Path) -> tuple[int, int] | None:
    """(height, width) of a file Pillow's ``open`` refuses as a decompression bomb: its format
    plugins read the header as ``open`` does, without the size check (``None`` if none can)."""
    Image.init()
    with open(path, "rb") as fp:
        prefix = fp.read(16)
        for fmt in Image.ID:
            factory, accept = Image.OPEN[fmt]
            if accept is not None and not accept(prefix):
                continue
            fp.seek(0)
            try:
                w, h = factory(fp, str(path)).size
                return h, w
            except Exception:  # noqa: BLE001 - not this format
                continue
    return None


def _too_large(path: Path, name: str, e: Exception, max_pixels: int | None) -> ImageReadError:
    size = _size_past_bomb_check(path)
    if size is not None and max_pixels is not None and size[0] * size[1] > max_pixels:
        try:
            check_pixel_limit(size, name, max_pixels)
        except ImageReadError as err:
            return err
    return ImageReadError(f"{name}: the image is too large to decode safely ({e})", "too_large")


def image_size(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> tuple[int, int]:
    """(height, width) from the file's header (no decoding); errors as :func:`read_rgb`'s."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
    except Image.DecompressionBombError as e:
        raise _too_large(path, str(path), e, max_pixels) from None
    except UnidentifiedImageError as e:
        raise ImageReadError(f"{path}: cannot decode image — not an image file Pillow can read ({e})",
                             "unidentified") from None  # fmt: skip
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageReadError(f"{path}: cannot decode image — corrupt or truncated ({e})", "corrupt") from None
    return h, w


def check_pixel_limit(size: tuple[int, int], name: str, max_pixels: int | None = MAX_PIXELS) -> None:
    h, w = size
    if max_pixels is not None and h * w > max_pixels:
        raise ImageReadError(
            f"{name}: {w}×{h} pixels ({h * w / 1e6:.0f} megapixels) is over the limit of "
            f"{max_pixels / 1e6:.0f} megapixels; refusing to decode it (downscale the file first)",
            "too_large",
        )


def read_rgb(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    notes: list[str] | None = None,
    exif: bool = False,
    max_side: int | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (see the module docstring for the conversions).

    ``name`` is how messages call the file (default: its path); ``notes`` collects what was
    converted. With ``max_side``, JPEGs larger than twice that are decoded at a reduced scale
    (still at least ``max_side`` on the longer side: :func:`downscale` finishes the job), so a
    huge photo never needs its full-resolution buffer. A missing file is a FileNotFoundError,
    anything else an :class:`ImageReadError`.
    """
    path = Path(path)
    name = str(path) if name is None else name
    notes = [] if notes is None else notes
    if not path.is_file():
        raise FileNotFoundError(f"{name}: image not found")
    try:
        with warnings.catch_warnings():
            # the pixel limit below replaces Pillow's decompression-bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                check_pixel_limit((im.size[1], im.size[0]), name, max_pixels)
                if max_side is not None and im.format == "JPEG" and max(im.size) >= 2 * max_side:
                    scale = max_side / max(im.size)
                    im.draft(im.mode, (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))))
                return rgb_from_pil(im, name, notes, exif=exif)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(
            f"{name}: cannot decode image — not an image file Pillow can read "
            "(PNG, JPEG, WebP, BMP, TIFF, ...)",
            "unidentified",
        ) from None
    except Image.DecompressionBombError as e:
        raise _too_large(path, name, e, max_pixels) from None
    except MemoryError:
        raise ImageReadError(f"{name}: not enough memory to decode the image", "too_large") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageReadError(f"{name}: cannot decode image — corrupt or truncated ({e})", "corrupt") from None


def downscale(rgb: np.ndarray, max_side: int, min_side: int = 8) -> tuple[np.ndarray, bool]:
    """``(image, changed)``: ``rgb`` with its longer side brought down to ``max_side`` (Pillow's
    antialiased bilinear resize), unchanged if it is not larger."""
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb, False
    scale = max_side / max(h, w)
    size = (max(min_side, round(h * scale)), max(min_side, round(w * scale)))
    return np.array(Image.fromarray(rgb).resize((size[1], size[0]), Image.BILINEAR)), True
