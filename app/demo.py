"""The demo's logic as a :class:`Demo` and plain functions: the Gradio UI, its API and the tests
all call these.

Nothing here imports gradio. Bad input raises :class:`app.errors.DemoError` with a message meant
for the user (the UI shows it with ``gr.Error``); conversions the user should know about are
collected as warnings on the :class:`app.images.LoadedImage` (the UI shows them with
``gr.Warning``).

- :func:`segment` ``(image, checkpoint_name) -> (overlay, segments_table, semantic_map)``
- :func:`inspect` ``(image, row, col, level, checkpoint_name) -> InspectResult`` (the highlighted
  panoptic result, six plotly figures and a Markdown summary, :mod:`app.figures`)
- :meth:`Demo.training_data` / :meth:`Demo.domain_note` — what a checkpoint was trained on, and a
  warning when its classes cannot describe the image (see :meth:`Demo.domain_note` for the rule)

``image`` is a file path, a numpy array or a PIL image; ``row``/``col`` are pixels of that
(original) image (:mod:`app.images` reads it and maps pixels through any downscale).

Module-level :func:`segment` / :func:`inspect` use a default :class:`Demo` (the shipped
checkpoint); :func:`configure` replaces it, as ``cfnet demo`` does with its arguments.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from app.checkpoints import (
    COCO_CHECKPOINT_HINT,
    DEFAULT_CHECKPOINT_NAME,
    SYNTHETIC_CATEGORY_SETS,
    TrainingData,
    checkpoint_card,
)
from app.errors import DemoError
from app.figures import info_markdown, inspection_figures
from app.images import DEFAULT_MAX_SIDE, MIN_SIDE, LoadedImage, check_pixel, load_image, to_tensor

if TYPE_CHECKING:  # cfnet.inspection imports torch; the app loads it lazily
    from cfnet.inspection import PointInspection

log = logging.getLogger(__name__)

LEVEL_CHOICES = ("P2", "P3", "P4", "P5", "P6")
TABLE_HEADERS = ["id", "category", "type", "score", "area (px)", "area (%)"]
_CACHE_SIZE = 8
EXAMPLES_DIR = Path(__file__).parent / "examples"


# ----------------------------------------------------------------------------------------------
# caches and loaded models


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


class _Loaded(NamedTuple):
    model: Any
    lock: threading.Lock
    cfg: Any = None


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
        card = checkpoint_card(str(self.checkpoints[name]))
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

            from cfnet.viz.overlays import panoptic_overlay

            with entry.lock:
                out = entry.model([to_tensor(loaded.array)])[0]
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
                return module_inputs(entry.model, to_tensor(loaded.array), image_size=loaded.original_size)

        return self._inputs.get_or_create((name, loaded.key), run)

    # ---------------------------------------------------------------- the two functions
    def segment(self, image: Any, checkpoint_name: str | None = None) -> SegmentResult:
        """Panoptic overlay, segments table and semantic map of ``image``."""
        import pandas as pd

        from cfnet.viz.overlays import semantic_color_map

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
        from cfnet.viz.overlays import highlight_segment

        if image is None:
            raise DemoError("No image loaded: pick an example or upload an image, then click on it.")
        loaded = self.image(image)
        row, col = check_pixel(row, col, loaded.original_size)
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
        figures = inspection_figures(data, loaded)
        info = info_markdown(data, loaded, segment, entry.model.categories, name)
        note = self.domain_note(image, name)
        if note:
            info = note + "\n\n" + info
        return InspectResult(highlight, *figures, info, data)


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
