"""Drawing, in two parts that import differently.

- :mod:`cfnet.viz.overlays` — panoptic overlays, semantic colour maps, segment highlights
  (numpy and Pillow; what ``cfnet predict`` writes);
- :mod:`cfnet.viz.figures` — the plotly figures of the correlations (the demo, the notebooks).

``from cfnet.viz import X`` works for the public names of both. The figures load on first use,
so ``cfnet predict`` and other overlay-only users never import plotly.
"""

from __future__ import annotations

import importlib
from typing import Any

from cfnet.viz.overlays import (
    boundaries,
    highlight_segment,
    panoptic_overlay,
    segment_colors,
    semantic_color_map,
)

_FIGURES = (
    "note_figure",
    "correlation_heatmap_figure",
    "axial_weights_figure",
    "correlation_curves_figure",
    "correlation_function_figure",
    "fourier_curves_figure",
    "reference_grid_figure",
)

__all__ = [
    "segment_colors",
    "panoptic_overlay",
    "semantic_color_map",
    "highlight_segment",
    "boundaries",
    *_FIGURES,
]


def __getattr__(name: str) -> Any:
    if name in _FIGURES:
        return getattr(importlib.import_module("cfnet.viz.figures"), name)
    raise AttributeError(f"module 'cfnet.viz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_FIGURES})
