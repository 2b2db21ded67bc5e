"""What the notebooks share: quick mode, where they write, and figures that survive a reopen.

The notebooks stay thin (they import from :mod:`cfnet`), so the pieces they all need live here:

- :func:`quick_mode` — ``CFNET_QUICK=1`` (what CI sets) shortens every run.
- :func:`output_dirs` / :func:`new_dir` — full modes write data, runs and results under
  ``CFNET_DATA``, ``CFNET_RUNS`` and ``CFNET_RESULTS`` (default: ``data/``, ``runs/`` and
  ``results/`` of the checkout), so a read-only checkout works when these point elsewhere; a
  notebook never deletes a folder it did not create in the same run.
- :class:`LiveFigure` and :func:`show_widget` — a live widget is shown with a readable text
  fallback and followed by a *static* plotly figure of its state. A notebook reopened without a
  kernel (or a saved copy without widget state, which is what we ship) cannot draw widgets;
  JupyterLab then shows the ``text/plain`` fallback, which for a widget is its repr — a
  multi-screen ``FigureWidget({... bdata ...})`` dump. The static copy is a plain
  ``application/vnd.plotly.v1+json`` output, which JupyterLab renders without a kernel.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
REPO = Path(__file__).resolve().parent.parent  # the checkout (editable install)
ENV_DIRS = {"data": "CFNET_DATA", "runs": "CFNET_RUNS", "results": "CFNET_RESULTS"}


def quick_mode() -> bool:
    """``CFNET_QUICK`` set to anything but ``""``/``"0"``: CI's short version of every notebook."""
    return os.environ.get("CFNET_QUICK", "") not in ("", "0")


def output_dirs() -> dict[str, Path]:
    """``{"data", "runs", "results"}`` → folder, from ``CFNET_DATA`` / ``CFNET_RUNS`` /
    ``CFNET_RESULTS`` or ``REPO/data``, ``REPO/runs``, ``REPO/results`` when unset.

    Nothing is created here: a notebook that only reads cached data must not need write access.
    """
    out = {}
    for key, var in ENV_DIRS.items():
        value = os.environ.get(var, "").strip()
        out[key] = Path(value).expanduser().resolve() if value else REPO / key
    return out


def new_dir(parent: Path, name: str) -> Path:
    """Create and return ``parent/name``, or ``parent/name-2``, ``-3``… when it exists.

    A notebook cell may be run again, and a folder of that name may hold someone's earlier run;
    only a folder this call created is safe to fill from scratch, so nothing is ever removed.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 10_000):
        path = parent / (name if k == 1 else f"{name}-{k}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"no free folder name {name}-N under {parent}")


def _display(*args: Any, **kwargs: Any) -> Any:
    from IPython.display import display

    return display(*args, **kwargs)


def static_bundle(fig: Any, caption: str = "") -> dict:
    """A plotly figure as a mime bundle: JupyterLab draws it without a kernel or widget state."""
    import plotly.graph_objects as go

    fig = go.Figure(fig)  # a plain copy (of a FigureWidget too)
    text = caption or (fig.layout.title.text or "plotly figure")
    return {PLOTLY_MIME: json.loads(fig.to_json()), "text/plain": f"[figure] {text}"}


def show_widget(widget: Any, text: str) -> None:
    """Display ``widget`` with ``text`` as its ``text/plain`` fallback instead of its repr.

    Without a kernel JupyterLab falls back to ``text/plain``; a widget's repr
    (``VBox(children=(ToggleButtons(…``) tells a reader nothing, ``text`` says what it is.
    """
    bundle = widget._repr_mimebundle_()
    if isinstance(bundle, tuple):  # (data, metadata)
        bundle = bundle[0]
    data = {k: v for k, v in bundle.items() if k != "text/plain"}
    if WIDGET_MIME not in data:  # not a widget after all: show it as it is
        _display(widget)
        return
    data["text/plain"] = f"[interactive control — needs a running kernel] {text}"
    _display(data, raw=True)


class LiveFigure:
    """A plotly figure that redraws in place, followed by a static copy of its latest state.

    ``fig`` is a :class:`plotly.graph_objects.FigureWidget` when plotly's widget support
    (``anywidget``) is installed — change its traces, then call :meth:`refresh` to update the
    static copy below it. Without widget support ``fig`` is a plain figure and only the static
    copy is shown (redrawn by :meth:`refresh`). :meth:`replace` swaps in a whole new figure.
    """

    def __init__(self, fig: Any, caption: str = "") -> None:
        import plotly.graph_objects as go

        self.caption = caption or (go.Figure(fig).layout.title.text or "figure")
        try:
            self.fig = go.FigureWidget(fig)
            self.live = True
        except ImportError:
            self.fig = go.Figure(fig)
            self.live = False
        self._handle = None

    def show(self) -> LiveFigure:
        if self.live:
            show_widget(self.fig, f"live figure: {self.caption} (static copy below)")
        self._handle = _display(self._static(), raw=True, display_id=True)
        return self

    def _static(self) -> dict:
        prefix = "state of the live figure above when last redrawn: " if self.live else ""
        return static_bundle(self.fig, prefix + self.caption)

    def refresh(self) -> None:
        """Redraw the static copy from the figure's current state."""
        if self._handle is not None:
            self._handle.update(self._static(), raw=True)

    def replace(self, new: Any) -> None:
        """Make the figure show ``new`` (all traces and the layout), then refresh the copy."""
        import plotly.graph_objects as go

        new = go.Figure(new)
        if self.live:
            with self.fig.batch_update():
                self.fig.data = []
                self.fig.add_traces(list(new.data))
                self.fig.layout = new.layout
        else:
            self.fig = new
        self.refresh()

    def on_click(self, callback: Callable[[int, int], None], trace: int = 0) -> None:
        """Call ``callback(row, col)`` when a point of trace ``trace`` is clicked (live only).

        Plotly reports the clicked point in axis units: for an image (or a heatmap on a pixel
        grid) x is the column and y the row.
        """
        if not self.live:
            return

        def handler(_trace: Any, points: Any, _state: Any) -> None:
            if points.xs and points.ys:
                callback(int(round(points.ys[0])), int(round(points.xs[0])))

        self.fig.data[trace].on_click(handler)
