"""End-to-end: the demo in a real Chromium (Debian's /usr/bin/chromium driven by Playwright).

Starts the app on a free local port in a thread, picks an example, waits for the panoptic
overlay, clicks a pixel of it, checks that the SCM / ICM plots appear, clicks elsewhere and checks
that they change; also a click before any image and a non-image upload give visible messages.

``CFNET_SCREENSHOT=1`` saves a screenshot to ``docs/images/demo.png`` (used by the README).
Never runs ``playwright install``: CI installs Chromium with apt (see .ci/run).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from app_server import running_demo

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "app" / "examples"
PLOTS = ("#scm-map", "#scm-weights", "#scm-curves", "#icm-map", "#icm-references", "#icm-curves")
TIMEOUT_MS = 120_000  # a shared 2-core CI machine can be slow; the waits return as soon as ready


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(
            "Chromium is not installed at /usr/bin/chromium (apt-get install chromium chromium-driver)"
        )
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    import torch

    import cfnet
    from cfnet.checkpoint import DEFAULT_CHECKPOINT, save_checkpoint

    if DEFAULT_CHECKPOINT.is_file():
        checkpoints = {"shapes-tiny (shipped)": "default"}
    else:  # until the lead ships the trained model
        torch.manual_seed(0)
        cfg = cfnet.get_config("shapes-tiny")
        path = save_checkpoint(
            tmp_path_factory.mktemp("ckpt") / "shapes-tiny-fresh.pt", model=cfnet.build_model(cfg), cfg=cfg
        )
        checkpoints = {"shapes-tiny (fresh)": str(path)}
    with running_demo(checkpoints) as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
            ],
        )
        try:
            pg = browser.new_page(viewport={"width": 1280, "height": 1000})
            pg.set_default_timeout(TIMEOUT_MS)
            pg.goto(app_url)
            pg.wait_for_selector("#examples button.gallery-item")
            yield pg
        finally:
            browser.close()


def _plot_data(page, selector: str) -> str:
    """The plotly traces a gr.Plot currently draws (plotly keeps them on the graph div)."""
    return page.evaluate(
        "(sel) => { const d = document.querySelector(sel + ' .js-plotly-plot');"
        " return d && d.data ? JSON.stringify(d.data.map(t => [t.type, t.z, t.x, t.y])) : null; }",
        selector,
    )


def _toast_text(page, text: str) -> None:
    page.locator(".toast-body", has_text=text).first.wait_for(state="visible")


def test_click_before_any_image_shows_a_message(page):
    page.click("#inspect-button")
    _toast_text(page, "No image loaded")


def test_example_overlay_click_and_plots_change(page):
    page.locator("#examples button.gallery-item").first.click()  # a shapes image
    overlay = page.locator("#overlay img")
    overlay.wait_for(state="visible")
    page.wait_for_function("() => document.querySelectorAll('#segments tbody tr').length > 0")
    box = overlay.bounding_box()
    assert box and box["width"] > 100
    # Away from the top-right buttons of the image (fullscreen, download).
    page.mouse.click(box["x"] + 0.3 * box["width"], box["y"] + 0.65 * box["height"])
    for sel in PLOTS:
        page.wait_for_selector(f"{sel} .js-plotly-plot")
    page.wait_for_function("() => document.querySelector('#inspect-info').innerText.includes('Pixel')")
    first = {sel: _plot_data(page, sel) for sel in ("#scm-map", "#icm-map", "#scm-curves")}
    row, col = page.input_value("#row input"), page.input_value("#col input")
    # The shown 128-px image is enlarged ×4 (512 px, shown at the box's width): the click maps back.
    natural = page.evaluate("() => document.querySelector('#overlay img').naturalWidth")
    assert natural == 512
    assert abs(int(row) - 0.65 * 128) <= 2 and abs(int(col) - 0.3 * 128) <= 2
    info = page.inner_text("#inspect-info")
    assert f"row {row}, col {col}" in info and "SCM at P3" in info and "ICM at P3" in info

    page.mouse.click(box["x"] + 0.75 * box["width"], box["y"] + 0.2 * box["height"])
    page.wait_for_function("(prev) => document.querySelector('#row input').value !== prev", arg=row)
    page.wait_for_function(
        "(args) => { const d = document.querySelector(args[0] + ' .js-plotly-plot');"
        " return d && d.data && JSON.stringify(d.data.map(t => [t.type, t.z, t.x, t.y])) !== args[1]; }",
        arg=["#scm-map", first["#scm-map"]],
    )
    for sel, before in first.items():
        page.wait_for_function(
            "(args) => { const d = document.querySelector(args[0] + ' .js-plotly-plot');"
            " return d && d.data && JSON.stringify(d.data.map(t => [t.type, t.z, t.x, t.y])) !== args[1]; }",
            arg=[sel, before],
        )
        assert _plot_data(page, sel) != before
    marker = json.loads(_plot_data(page, "#scm-map"))
    assert any(t[0] == "heatmap" for t in marker)
    assert page.locator(".toast-body").filter(has_text="Something went wrong").count() == 0

    if os.environ.get("CFNET_SCREENSHOT") == "1":
        out = ROOT / "docs" / "images" / "demo.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(1000)  # let plotly finish drawing
        page.screenshot(path=str(out), full_page=True)


def test_non_image_upload_shows_a_message(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    clear = page.locator("#input-image button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.set_input_files("#input-image input[type=file]", str(bad))
    _toast_text(page, "notes.png is not an image file that can be read")
