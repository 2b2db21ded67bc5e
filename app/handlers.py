"""The demo's logic as plain functions: the Gradio UI, its API and the tests all call these.

Nothing here imports gradio. Bad input raises :class:`DemoError` with a message meant for the
user (the UI shows it with ``gr.Error``); conversions the user should know about (grayscale,
alpha, 16-bit, downscaling) are collected as warnings (the UI shows them with ``gr.Warning``).

- :func:`segment` ``(image, checkpoint_name) -> (overlay, segments_table, semantic_map)``
- :func:`inspect` ``(image, row, col, level, checkpoint_name) -> InspectResult`` (the highlighted
  panoptic result, six plotly figures and a Markdown summary)
- :meth:`Demo.training_data` / :meth:`Demo.domain_note` — what a checkpoint was trained on, and a
  warning when its classes cannot describe the image (see :meth:`Demo.domain_note` for the rule)

``image`` is a file path, a numpy array or a PIL image; ``row``/``col`` are pixels of that
(original) image. Images whose longer side exceeds ``max_side`` are downscaled before the model
sees them; clicks are mapped through that downscale with the pixel-centre convention of
:mod:`cfnet.inspection`, so the point inspected is the one clicked.

Module-level :func:`segment` / :func:`inspect` use a default :class:`Demo` (the shipped
checkpoint); :func:`configure` replaces it, as ``cfnet demo`` does with its arguments.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from PIL import Image

from cfnet import image_io
from cfnet.image_io import ImageReadError

if TYPE_CHECKING:  # cfnet.inspection imports torch; the app loads it lazily
    from cfnet.inspection import CorrelationView, PointInspection

log = logging.getLogger(__name__)

DEFAULT_MAX_SIDE = image_io.DEFAULT_MAX_SIDE  # `cfnet predict --max-side` has the same default
MIN_SIDE = 8
# The UI shows small results enlarged by an integer factor up to this side (nearest neighbour,
# server-side: Gradio maps clicks to the natural pixels of the image it shows and assumes the
# browser never upscales it).
DISPLAY_MIN_SIDE = 512
DEFAULT_CHECKPOINT_NAME = "shapes-tiny (shipped)"
LEVEL_CHOICES = ("P2", "P3", "P4", "P5", "P6")
TABLE_HEADERS = ["id", "category", "type", "score", "area (px)", "area (%)"]
_CACHE_SIZE = 8
EXAMPLES_DIR = Path(__file__).parent / "examples"
# Category sets of the synthetic data set. A model trained on them knows only shapes and stripe
# bands, so on a photo it still answers "circle" or "stripes-top" — with no sign that it is guessing.
SYNTHETIC_CATEGORY_SETS = ("shapes", "shapes-hard")
COCO_CHECKPOINT_HINT = "cfnet demo --checkpoint-dir DIR"


class DemoError(ValueError):
    """Bad input or an unusable checkpoint; the message is shown to the user as is."""


# ----------------------------------------------------------------------------------------------
# images


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


# ----------------------------------------------------------------------------------------------
# checkpoints


class _LRU:
    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self.size = size
        self.data: OrderedDict[Any, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get_or_create(self, key: Any, create: Callable[[], Any]) -> Any:
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        value = create()
        with self.lock:
            self.data[key] = value
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return value


def discover_checkpoints(
    checkpoint: str | Path | None = "default", checkpoint_dir: str | Path | None = None
) -> dict[str, str]:
    """The chooser's entries: ``{display name: path or "default"}``.

    ``checkpoint`` (``"default"`` = the shipped shapes-tiny model, or a path) comes first; every
    ``*.pt`` in ``checkpoint_dir`` follows, named by file name.
    """
    found: dict[str, str] = {}
    if checkpoint is not None:
        if str(checkpoint) == "default":
            found[DEFAULT_CHECKPOINT_NAME] = "default"
        else:
            found[Path(checkpoint).name] = str(checkpoint)
    if checkpoint_dir is not None:
        folder = Path(checkpoint_dir)
        if not folder.is_dir():
            raise DemoError(f"--checkpoint-dir {folder}: not a folder.")
        for path in sorted(folder.glob("*.pt")):
            name = path.name
            if name in found and found[name] != str(path):
                name = str(path)
            found.setdefault(name, str(path))
    return found


class _Loaded(NamedTuple):
    model: Any
    lock: threading.Lock
    cfg: Any = None


class TrainingData(NamedTuple):
    """What a checkpoint was trained on, for the note beside the chooser."""

    categories: str  # the category spec of its config ("shapes", "coco", a JSON path, …)
    synthetic: bool  # one of SYNTHETIC_CATEGORY_SETS: the model cannot describe real photos
    markdown: str


def _card(checkpoint: str) -> dict:
    """The card ``cfnet export`` writes beside a checkpoint (``X.pt`` → ``X.json``), or ``{}``."""
    import json

    from cfnet.checkpoint import DEFAULT_CHECKPOINT

    path = DEFAULT_CHECKPOINT if checkpoint == "default" else Path(checkpoint)
    card = path.with_suffix(".json")
    try:
        data = json.loads(card.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ----------------------------------------------------------------------------------------------
# results


class SegmentResult(NamedTuple):
    overlay: np.ndarray  # h × w × 3 uint8: the panoptic result over the (processed) image
    segments: Any  # pandas DataFrame with TABLE_HEADERS
    semantic: np.ndarray  # h × w × 3 uint8: the semantic branch's argmax in category colours


class InspectResult(NamedTuple):
    highlight: np.ndarray  # the panoptic result with the clicked segment highlighted
    scm_map: Any  # plotly figures (a note figure where the model has no such module / level)
    scm_weights: Any
    scm_curves: Any
    icm_map: Any
    icm_references: Any
    icm_curves: Any
    info: str  # Markdown summary
    data: PointInspection  # what cfnet.inspection.inspect_point returned (typed SCM / ICM views)


@dataclass
class _Prediction:
    panoptic_seg: np.ndarray
    segments_info: list[dict]
    sem_labels: np.ndarray  # argmax of the semantic branch (contiguous ids); the C×H×W probabilities
    overlay: np.ndarray  # are not kept (133 classes at 1024 px would be ~0.4 GB per image)


class Demo:
    """Checkpoints, the ``max_side`` setting and small caches behind :func:`segment` / :func:`inspect`.

    Models load lazily on first use and are kept; each is used under its own lock (inference and
    the caches are safe with Gradio's concurrent workers).
    """

    def __init__(
        self,
        checkpoints: Mapping[str, str | Path] | None = None,
        max_side: int = DEFAULT_MAX_SIDE,
        device: str = "cpu",
    ) -> None:
        self.checkpoints = dict(checkpoints or {DEFAULT_CHECKPOINT_NAME: "default"})
        if not self.checkpoints:
            raise DemoError("no checkpoints to choose from")
        if not isinstance(max_side, int) or max_side < MIN_SIDE:
            raise DemoError(f"--max-side must be an integer >= {MIN_SIDE}, got {max_side!r}")
        self.max_side = max_side
        self.device = device
        self._models: dict[str, _Loaded] = {}
        self._models_lock = threading.Lock()
        self._images = _LRU()
        self._predictions = _LRU()
        self._inputs = _LRU(4)  # FPN features of an image: the largest entries

    @property
    def checkpoint_names(self) -> list[str]:
        return list(self.checkpoints)

    @property
    def default_checkpoint(self) -> str:
        return next(iter(self.checkpoints))

    # ---------------------------------------------------------------- pieces
    def model(self, name: str | None) -> _Loaded:
        """The model of checkpoint ``name`` (loaded on first use); DemoError when it cannot load."""
        name = name or self.default_checkpoint
        if name not in self.checkpoints:
            raise DemoError(f"unknown checkpoint {name!r}; choose one of: {', '.join(self.checkpoints)}")
        with self._models_lock:
            if name not in self._models:
                from cfnet.checkpoint import CheckpointError, load_checkpoint
                from cfnet.config import ConfigError

                try:
                    model, cfg, _ = load_checkpoint(self.checkpoints[name], device=self.device)
                except (CheckpointError, ConfigError, OSError, ValueError, KeyError) as e:
                    raise DemoError(f"Checkpoint {name!r} cannot be used: {e}") from None
                self._models[name] = _Loaded(model, threading.Lock(), cfg)
            return self._models[name]

    def training_data(self, name: str | None) -> TrainingData:
        """The data set checkpoint ``name`` was trained on: from its card (``cfnet export`` writes
        one; the shipped model's is ``cfnet/weights/shapes-tiny.json``), else from the category
        set in the checkpoint's config (this loads the model)."""
        name = name or self.default_checkpoint
        if name not in self.checkpoints:
            raise DemoError(f"unknown checkpoint {name!r}; choose one of: {', '.join(self.checkpoints)}")
        card = _card(str(self.checkpoints[name]))
        spec = ((card.get("config") or {}).get("model") or {}).get("categories")
        entry = None
        if spec is None:
            entry = self.model(name)
            spec = getattr(getattr(entry.cfg, "model", None), "categories", None)
        spec = spec if isinstance(spec, str) else "custom (a list in the config)"
        synthetic = spec in SYNTHETIC_CATEGORY_SETS
        text = f"**Trained on:** `{spec}`"
        if synthetic:
            text += " — the synthetic shapes data set (`cfnet data shapes`)"
        data = card.get("data") or {}
        if data:
            text += (
                f"; {data.get('num_train', '?')} training images of {data.get('size', '?')} px, "
                f"seed {data.get('seed', '?')}"
            )
        if card.get("iterations"):
            text += f"; {card['iterations']} iterations"
        if entry is not None:
            names = [r["name"] for r in entry.model.categories.records]
            shown = ", ".join(names[:12]) + (f", … ({len(names)} classes)" if len(names) > 12 else "")
            text += f". Classes: {shown}."
        elif card:
            text += " (from its card)."
        if synthetic:
            text += (
                " It can name only those shapes and stripe bands; for photos load a COCO-trained "
                f"checkpoint with `{COCO_CHECKPOINT_HINT}`."
            )
        return TrainingData(spec, synthetic, text)

    def _shapes_example_keys(self) -> set[str]:
        """Content keys of the bundled synthetic examples (``app/examples/shapes-*.png``).

        By content, not path: Gradio hands the handlers a temporary copy of an example file.
        """
        keys = getattr(self, "_example_keys", None)
        if keys is None:
            keys = set()
            for path in sorted(EXAMPLES_DIR.glob("shapes-*.png")):
                try:
                    keys.add(load_image(path, self.max_side).key)
                except DemoError:
                    continue
            self._example_keys = keys
        return keys

    def domain_note(self, image: Any, name: str | None) -> str:
        """A Markdown warning when checkpoint ``name``'s classes cannot describe ``image``; else "".

        The rule: a model whose category set is one of SYNTHETIC_CATEGORY_SETS (``shapes``,
        ``shapes-hard``) warns on every image that is not one of the bundled synthetic examples
        (``app/examples/shapes-*.png``, compared by content). It cannot tell a photo from a
        synthetic image itself, and its answer on anything else is a shape or band name whatever
        the image shows. Models trained on other category sets (COCO, custom) never warn.
        """
        info = self.training_data(name)
        if not info.synthetic:
            return ""
        if self.image(image).key in self._shapes_example_keys():
            return ""
        return (
            f"⚠️ **This checkpoint knows only the synthetic `{info.categories}` classes** (shapes and "
            "stripe bands), so the labels below cannot describe this image: whatever it shows comes "
            "back as a shape or a band. To segment photos, start the demo with a COCO-trained "
            f"checkpoint: `{COCO_CHECKPOINT_HINT}` (a folder of `.pt` files, offered in the "
            "checkpoint chooser). The correlation maps (click a pixel) still show what this model's "
            "SCM and ICM compute there."
        )

    def image(self, source: Any) -> LoadedImage:
        key = None
        if isinstance(source, Mapping):
            source = source.get("path") or None
        if isinstance(source, (str, Path)) and Path(source).is_file():
            st = Path(source).stat()
            key = (str(Path(source).resolve()), st.st_mtime_ns, st.st_size, self.max_side)
        if key is None:
            return load_image(source, self.max_side)
        return self._images.get_or_create(key, lambda: load_image(source, self.max_side))

    def prediction(self, name: str, loaded: LoadedImage) -> _Prediction:
        entry = self.model(name)
        name = name or self.default_checkpoint

        def run() -> _Prediction:
            import torch

            from cfnet.viz import panoptic_overlay

            with entry.lock:
                out = entry.model([_to_tensor(loaded.array)])[0]
            seg = out["panoptic_seg"].cpu().numpy()
            info = list(out["segments_info"])
            overlay = panoptic_overlay(loaded.array, seg, info, entry.model.categories)
            labels = out["sem_seg"].argmax(0).to(torch.int16).cpu().numpy()
            return _Prediction(seg, info, labels, overlay)

        return self._predictions.get_or_create((name, loaded.key), run)

    def module_inputs(self, name: str, loaded: LoadedImage):
        from cfnet.inspection import module_inputs

        entry = self.model(name)
        name = name or self.default_checkpoint

        def run():
            with entry.lock:
                return module_inputs(entry.model, _to_tensor(loaded.array), image_size=loaded.original_size)

        return self._inputs.get_or_create((name, loaded.key), run)

    # ---------------------------------------------------------------- the two functions
    def segment(self, image: Any, checkpoint_name: str | None = None) -> SegmentResult:
        """Panoptic overlay, segments table and semantic map of ``image``."""
        import pandas as pd

        from cfnet.viz import semantic_color_map

        loaded = self.image(image)
        entry = self.model(checkpoint_name)
        pred = self.prediction(checkpoint_name or self.default_checkpoint, loaded)
        cats = entry.model.categories
        total = float(pred.panoptic_seg.size)
        rows = []
        for s in pred.segments_info:
            cat = cats.contiguous(s["category_id"])
            rows.append(
                [
                    int(s["id"]),
                    cats.name(cat),
                    "thing" if s.get("isthing", cats.is_thing(cat)) else "stuff",
                    round(float(s.get("score", 1.0)), 3),
                    int(s.get("area", 0)),
                    round(100.0 * int(s.get("area", 0)) / total, 2),
                ]
            )
        table = pd.DataFrame(rows, columns=TABLE_HEADERS)
        semantic = semantic_color_map(pred.sem_labels, cats, image=loaded.array)
        return SegmentResult(pred.overlay, table, semantic)

    def inspect(
        self, image: Any, row: Any, col: Any, level: str = "P3", checkpoint_name: str | None = None
    ) -> InspectResult:
        """Correlations learned by SCM and ICM at original-image pixel ``(row, col)`` (see module doc)."""
        from cfnet.inspection import LEVELS, inspect_point
        from cfnet.viz import highlight_segment

        if image is None:
            raise DemoError("No image loaded: pick an example or upload an image, then click on it.")
        loaded = self.image(image)
        row, col = _check_pixel(row, col, loaded.original_size)
        lvl = str(level or "P3").strip().lower()
        if lvl not in LEVELS:
            raise DemoError(f"level must be one of {', '.join(LEVEL_CHOICES)}, got {level!r}")
        name = checkpoint_name or self.default_checkpoint
        entry = self.model(name)
        pred = self.prediction(name, loaded)
        inputs = self.module_inputs(name, loaded)
        data = inspect_point(entry.model, None, (row, col), lvl, inputs=inputs)
        prow, pcol = loaded.to_processed(row, col)
        seg_id = int(pred.panoptic_seg[prow, pcol])
        segment = next((s for s in pred.segments_info if int(s["id"]) == seg_id), None)
        highlight = highlight_segment(pred.overlay, pred.panoptic_seg, seg_id or None, point=(prow, pcol))
        figures = _figures(data, loaded)
        info = _info_markdown(data, loaded, segment, entry.model.categories, name)
        note = self.domain_note(image, name)
        if note:
            info = note + "\n\n" + info
        return InspectResult(highlight, *figures, info, data)


def _to_tensor(array: np.ndarray):
    import torch

    return torch.tensor(array).permute(2, 0, 1).float().div_(255.0)  # a copy: the array may be read-only


def _check_pixel(row: Any, col: Any, size: tuple[int, int]) -> tuple[int, int]:
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


def _figures(data: PointInspection, loaded: LoadedImage) -> tuple[Any, ...]:
    from cfnet.viz import (
        axial_weights_figure,
        correlation_curves_figure,
        correlation_heatmap_figure,
        note_figure,
        reference_grid_figure,
    )

    level = data.level.upper()
    point = data.point
    extent = loaded.original_size
    background = loaded.array

    def heatmap(view: CorrelationView, title: str, references: bool = False):
        vr, vc = view.valid_size
        refs = None
        if references:
            refs = (view.reference_ys_image, view.reference_xs_image)
        return correlation_heatmap_figure(
            view.correlation_map[:vr, :vc],
            image=background,
            point=point,
            title=title,
            cell_size=view.stride,
            extent=extent,
            references=refs,
        )

    def curves(view: CorrelationView, title: str):
        # Curves and bars come from the model's own correlation function (cfnet.inspection asked it):
        # nothing here assumes a family.
        return correlation_curves_figure(
            view.curves,
            view.parameter_groups,
            point=view.feature_point,
            stride=view.stride,
            title=f"{title} ({view.function})",
            function_label=view.function_label,
        )

    scm, icm = data.scm, data.icm
    if scm is not None:
        ys, xs = scm.cell_centres
        fi, fj = scm.feature_point
        scm_figs = (
            heatmap(scm, f"SCM: cor₂d(u, ·) at {level} ({scm.feature_size[0]}×{scm.feature_size[1]})"),
            axial_weights_figure(
                scm.row_weights,
                scm.col_weights,
                row_positions=xs,
                col_positions=ys,
                point=(ys[fi], xs[fj]),
                title=f"SCM: softmax weights of Eq. 9 along u's row and column ({level})",
            ),
            curves(
                scm,
                f"SCM: G(θ<sub>u</sub><sup>hor</sup>, x) and G(θ<sub>u</sub><sup>ver</sup>, y) at {level}",
            ),
        )
    else:
        note = data.scm_note or "No SCM data."
        scm_figs = (
            note_figure(note, "SCM: cor₂d(u, ·)"),
            note_figure(note, "SCM: Eq. 9 weights"),
            note_figure(note, "SCM: correlation functions"),
        )
    if icm is not None:
        refs = icm.references
        icm_figs = (
            heatmap(
                icm,
                f"ICM: cor₂d(u, ·) at {level} ({icm.feature_size[0]}×{icm.feature_size[1]})",
                references=True,
            ),
            reference_grid_figure(
                refs,
                icm.reference_ys_image,
                icm.reference_xs_image,
                image=background,
                extent=extent,
                point=point,
                title=(
                    f"ICM: c<sub>u</sub>, correlations with the {refs.shape[0]}×{refs.shape[1]} "
                    "reference points (Eq. 10)"
                ),
            ),
            curves(
                icm,
                f"ICM: G(θ<sub>u</sub><sup>hor</sup>, x) and G(θ<sub>u</sub><sup>ver</sup>, y) at {level}",
            ),
        )
    else:
        note = data.icm_note or "No ICM data."
        icm_figs = (
            note_figure(note, "ICM: cor₂d(u, ·)"),
            note_figure(note, "ICM: reference points"),
            note_figure(note, "ICM: correlation functions"),
        )
    return scm_figs + icm_figs


def _info_markdown(
    data: PointInspection, loaded: LoadedImage, segment: dict | None, categories: Any, name: str
) -> str:
    row, col = data.point
    (oh, ow), (h, w) = loaded.original_size, loaded.size
    lines = [f"**Pixel** row {row}, col {col} of the image ({ow} wide × {oh} high; checkpoint *{name}*)."]
    if loaded.downscaled:
        lines.append(f"The model saw the image downscaled to {w} × {h}.")
    if segment is None:
        lines.append("**Segment:** void (no segment at this pixel).")
    else:
        cat = categories.contiguous(segment["category_id"])
        kind = "thing" if segment.get("isthing", categories.is_thing(cat)) else "stuff"
        lines.append(
            f"**Segment:** {categories.name(cat)} ({kind}), id {segment['id']}, "
            f"score {float(segment['score']):.3f}, area {int(segment['area'])} px."
        )
    level = data.level.upper()
    views: tuple[tuple[str, CorrelationView | None, str | None], ...] = (
        ("SCM", data.scm, data.scm_note),
        ("ICM", data.icm, data.icm_note),
    )
    for label, view, note in views:
        if view is None:
            lines.append(f"**{label}:** {note}")
            continue
        fh, fw = view.feature_size
        fi, fj = view.feature_point
        sy, sx = view.stride
        text = (
            f"**{label} at {level}:** map {fh}×{fw}, pixel → cell (row {fi}, col {fj}); one cell = "
            f"{sy:.2f}×{sx:.2f} image pixels. Correlation function G: `{view.function}`."
        )
        if label == "ICM" and view.input_stride:  # an IcmView
            text += " " + view.input_stride
        lines.append(text)
    return "\n\n".join(lines)


# ----------------------------------------------------------------------------------------------
# the module-level API


_default: Demo | None = None
_default_lock = threading.Lock()


def configure(checkpoints: Mapping[str, str | Path] | None = None, max_side: int = DEFAULT_MAX_SIDE) -> Demo:
    """Replace the default :class:`Demo` used by :func:`segment` and :func:`inspect`."""
    global _default
    with _default_lock:
        _default = Demo(checkpoints, max_side)
        return _default


def set_demo(demo: Demo) -> None:
    """Make ``demo`` the default (``build_app`` does, so the UI and these functions share models)."""
    global _default
    with _default_lock:
        _default = demo


def get_demo() -> Demo:
    global _default
    with _default_lock:
        if _default is None:
            _default = Demo()
        return _default


def segment(image: Any, checkpoint_name: str | None = None) -> SegmentResult:
    """``(overlay, segments_table, semantic_map)`` of ``image`` with the default Demo."""
    return get_demo().segment(image, checkpoint_name)


def inspect(
    image: Any, row: Any, col: Any, level: str = "P3", checkpoint_name: str | None = None
) -> InspectResult:
    """Figures and summary for original-image pixel ``(row, col)`` at ``level`` with the default Demo."""
    return get_demo().inspect(image, row, col, level, checkpoint_name)
