"""The five notebooks: stored without outputs, and each runs top to bottom in quick mode.

Quick mode (``CFNET_QUICK=1``) shortens every data set, training run and benchmark so that the
five together take a few minutes on a 2-core CPU. The kernel is the ``python3`` kernel of the
interpreter running pytest (ipykernel is installed with jupyterlab), so the notebooks see the same
``cfnet`` as the tests; nothing is registered globally.

Each notebook is executed once (CI time matters): the same run is saved the way an executed copy
is saved (without widget state) and its outputs are checked for what a reader sees when the copy
is reopened without a kernel.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from queue import Empty

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = [
    "01_dft_correlation.ipynb",
    "02_semantic_correlation.ipynb",
    "03_instance_correlation.ipynb",
    "04_training.ipynb",
    "05_ablations.ipynb",
]
CELL_TIMEOUT_S = 600
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
MAX_OUTPUT_BYTES = 1_000_000
# A widget's repr, what JupyterLab shows for a widget output without a kernel: `VBox(children=(…`,
# `FigureWidget({…`, `IntSlider(value=0)`.
WIDGET_REPR = re.compile(r"^\s*[A-Z]\w*\(")
# Notebooks whose widgets carry a short text fallback (cfnet.notebook.show_widget / LiveFigure)
# instead of their repr: all of them.
SHORT_FALLBACKS = EXPECTED


def _poll_in_slices(channel, step: float = 0.5) -> None:
    """Make ``channel.get_msg(timeout=T)`` wait in short polls instead of one long one.

    With zmq.asyncio a single long poll can miss a message that arrived while the client was busy
    elsewhere (edge-triggered wake-up), and nbclient then sits until the cell timeout although
    the reply is there (jupyter/nbclient#312; seen here on a loaded machine with ipywidgets
    cells). Re-polling every ``step`` seconds re-checks the socket, so such a message is picked up.
    """
    original = channel.get_msg

    async def get_msg(timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = step if deadline is None else max(0.0, min(step, deadline - time.monotonic()))
            try:
                return await original(timeout=wait)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    channel.get_msg = get_msg


def _client(nb: nbformat.NotebookNode):
    from nbclient import NotebookClient

    class Client(NotebookClient):
        async def async_start_new_kernel_client(self):
            kc = await super().async_start_new_kernel_client()
            for channel in (kc.shell_channel, kc.iopub_channel):
                _poll_in_slices(channel)
            return kc

    return Client(
        nb,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=300,  # a busy machine can take minutes to import ipykernel + torch
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def test_the_five_notebooks_and_their_index_exist():
    found = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    assert found == EXPECTED
    index = (NOTEBOOK_DIR / "README.md").read_text()
    for name in EXPECTED:
        assert name in index, f"notebooks/README.md does not list {name}"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_is_stored_without_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"notebooks/{name}: code cells {dirty} carry outputs or execution counts; clear them before "
        "committing (e.g. `jupyter nbconvert --clear-output --inplace notebooks/*.ipynb`)"
    )
    assert "widgets" not in nb.metadata, f"notebooks/{name}: saved widget state in the metadata; clear it"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_opens_with_its_purpose_and_ends_with_findings(name):
    nb = _read(name)
    first, last = nb.cells[0], nb.cells[-1]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith("# ")
    assert last.cell_type == "markdown" and "What we found" in last.source


def check_saved_outputs(nb: nbformat.NotebookNode, name: str) -> None:
    """What a reader of the saved, executed ``nb`` sees without a kernel must be readable.

    Every widget output (it needs a kernel) is followed in its cell by a static plotly figure; no
    output is only a widget-model reference (each carries a text fallback, and in SHORT_FALLBACKS
    notebooks that fallback is not the widget's repr); no output is over 1 MB; no widget state.
    """
    assert "widgets" not in nb.metadata, f"{name}: the executed copy stores widget state"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        outputs = cell.get("outputs", [])
        for k, out in enumerate(outputs):
            size = len(json.dumps(out))
            assert size <= MAX_OUTPUT_BYTES, f"{name} cell {i} output {k}: {size / 1e6:.1f} MB"
            data = out.get("data", {})
            if WIDGET_MIME not in data:
                continue
            fallback = "".join(data.get("text/plain", "")).strip()
            assert fallback, f"{name} cell {i} output {k}: only a widget-model placeholder, no fallback"
            assert name not in SHORT_FALLBACKS or not WIDGET_REPR.match(fallback), (
                f"{name} cell {i} output {k}: widget fallback is a repr: {fallback[:80]!r}"
            )
            later = [o for o in outputs[k + 1 :] if PLOTLY_MIME in o.get("data", {})]
            assert later, f"{name} cell {i} output {k}: a widget without a static plotly figure after it"


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_in_quick_mode_and_saves_readable_outputs(name, monkeypatch, tmp_path):
    nb = _read(name)
    # The kernel inherits this environment: quick mode, no GUI backends, temp files under tmp_path.
    monkeypatch.setenv("CFNET_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # One intra-op thread: quick mode is tiny, and on a busy 2-core machine two OpenMP threads per
    # process were measured to make a 0.3 s forward pass take 3-9 s (oversubscription).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(NOTEBOOK_DIR.parent),
                                                                     os.environ.get("PYTHONPATH")])))
    # A last cell, removed again before the checks: which cfnet the kernel imported (this checkout's,
    # not another one installed in the same environment).
    nb.cells.append(nbformat.v4.new_code_cell("import cfnet; print(cfnet.__file__)"))
    client = _client(nb)
    start = time.monotonic()
    client.execute()  # raises CellExecutionError naming the cell on the first error
    print(f"{name}: executed in quick mode in {time.monotonic() - start:.0f} s")
    probe = nb.cells.pop()
    imported = Path("".join(o.get("text", "") for o in probe.outputs).strip())
    assert imported.resolve().is_relative_to(NOTEBOOK_DIR.parent.resolve()), imported
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    # Executed copies are saved without widget state: it is ~5 MB of plotly.js per notebook and
    # useless without a kernel (the static figures after each widget replace it). nbclient's own
    # switch (store_widget_state=False) crashes on Output widgets (KeyError in output_widget.py,
    # nbclient 0.10), so the state is collected and dropped, as `jupyter nbconvert --execute
    # --ClearMetadataPreprocessor.enabled=True` or JupyterLab (widget state saving off) would.
    nb.metadata.pop("widgets", None)
    saved = tmp_path / name
    nbformat.write(nb, saved)
    check_saved_outputs(nbformat.read(saved, as_version=4), name)


def _output(data: dict) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("display_data", data=data)


def test_saved_output_check_catches_what_a_reader_cannot_see():
    widget = {WIDGET_MIME: {"model_id": "x", "version_major": 2, "version_minor": 0}}
    static = {PLOTLY_MIME: {"data": [], "layout": {}}, "text/plain": "[figure]"}

    def notebook(*outputs):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("", outputs=list(outputs))]
        return nb

    readable = {**widget, "text/plain": "[interactive control] N"}
    check_saved_outputs(notebook(_output(readable), _output(static)), "01_dft_correlation.ipynb")
    bad = {
        "no static copy": notebook(_output(readable)),
        "bare placeholder": notebook(_output(widget), _output(static)),
        "repr fallback": notebook(_output({**widget, "text/plain": "VBox(children=(...))"}), _output(static)),
        "over 1 MB": notebook(_output({"text/plain": "x" * (MAX_OUTPUT_BYTES + 1)})),
    }
    for why, nb in bad.items():
        with pytest.raises(AssertionError):
            check_saved_outputs(nb, "01_dft_correlation.ipynb")
            pytest.fail(f"not caught: {why}")
    stateful = notebook()
    stateful.metadata["widgets"] = {}
    with pytest.raises(AssertionError):
        check_saved_outputs(stateful, "01")


def test_notebook_output_folders_follow_the_environment(monkeypatch, tmp_path):
    from cfnet.notebook import REPO, new_dir, output_dirs

    for var in ("CFNET_DATA", "CFNET_RUNS", "CFNET_RESULTS"):
        monkeypatch.delenv(var, raising=False)
    assert output_dirs() == {"data": REPO / "data", "runs": REPO / "runs", "results": REPO / "results"}
    monkeypatch.setenv("CFNET_RUNS", str(tmp_path / "runs"))
    assert output_dirs()["runs"] == tmp_path / "runs" and not (tmp_path / "runs").exists()  # nothing created
    # An existing folder (someone's earlier run) is kept; the new run gets its own folder.
    first = new_dir(tmp_path / "runs", "notebook-04")
    (first / "model_final.pt").write_text("earlier run")
    second = new_dir(tmp_path / "runs", "notebook-04")
    assert second.name == "notebook-04-2" and (first / "model_final.pt").read_text() == "earlier run"


def test_live_figure_click_gives_row_and_col():
    """The plumbing behind 02's "click a pixel": plotly's click on the image trace → (row, col)."""
    import numpy as np
    import plotly.graph_objects as go
    from plotly.callbacks import Points

    from cfnet.notebook import LiveFigure

    live = LiveFigure(go.Figure(go.Image(z=np.zeros((8, 10, 3), np.uint8))), caption="image")
    assert live.live, "plotly widget support (anywidget) is a dependency"
    clicks = []
    live.on_click(lambda row, col: clicks.append((row, col)))
    points = Points(point_inds=[[5, 7]], xs=[7], ys=[5], trace_name="", trace_index=0)
    live.fig.data[0]._dispatch_on_click(points, None)
    assert clicks == [(5, 7)]
    # A redraw swaps traces and layout, and the static copy (none shown yet) does not fail.
    live.replace(go.Figure(go.Scatter(y=[1, 2]), layout=dict(title="new")))
    assert live.fig.layout.title.text == "new" and live.fig.data[0].type == "scatter"
