"""``cfnet demo``: the Gradio demo — panoptic results and what SCM / ICM learned, pixel by pixel.

    cfnet demo [--checkpoint PATH|default] [--checkpoint-dir DIR] [--host 127.0.0.1] [--port 7860]
               [--max-side 1024] [--share]

1. Pick an example or upload an image: the panoptic overlay, the segments table and the semantic
   map appear (checkpoint chooser: the shipped model and every ``.pt`` in ``--checkpoint-dir``).
2. Click a pixel of the panoptic result: the SCM's cor_2d(u, ·) (Eq. 6) and Eq. 9 softmax weights,
   the ICM's cor_2d(u, ·) and correlations with the S×S reference points (Eq. 10), and the 1-D
   correlation functions G(θ_u, ·) (Eq. 5 for the default ``dft``; whatever family the checkpoint
   was trained with) are drawn at the chosen FPN level; the clicked pixel's segment is
   highlighted.
3. The same functions are an API: ``Client(url).predict(handle_file(path), api_name="/segment")``
   and ``.predict(handle_file(path), row, col, "P3", api_name="/inspect")``.

The UI is a thin layer: the work is in :mod:`app.demo` (the :class:`~app.demo.Demo` and its
API), :mod:`app.images`, :mod:`app.checkpoints` and :mod:`app.figures`, over
:mod:`cfnet.inspection` and :mod:`cfnet.viz`. User errors become ``gr.Error`` pop-ups,
conversions ``gr.Warning`` ones; an unexpected failure is logged on the server and reported
without a stack trace.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home; the machine may be offline

import gradio as gr  # noqa: E402
from PIL import UnidentifiedImageError  # noqa: E402

from app import demo as demo_api  # noqa: E402
from app.checkpoints import discover_checkpoints  # noqa: E402
from app.demo import LEVEL_CHOICES, TABLE_HEADERS, Demo  # noqa: E402
from app.errors import DemoError  # noqa: E402
from app.images import DEFAULT_MAX_SIDE  # noqa: E402

log = logging.getLogger("cfnet.demo")

EXAMPLES_DIR = Path(__file__).parent / "examples"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")

INTRO = """# CFNet — learning correlation functions for one-stage panoptic segmentation
Pick an example or upload an image to get its **panoptic segmentation**. Then **click any pixel of the
panoptic result** to see what the network learned for it: the *semantic* correlation of the SCM
(softmax weights along the pixel's row and column, Eq. 9, and the 2-D map cor₂d(u, ·), Eq. 6), the
*instance* correlation of the ICM (cor₂d(u, ·) and the correlations with the S×S reference points,
Eq. 10), and the 1-D correlation functions G(θ, ·) (Eq. 5's Fourier series for the paper's model)
with their parameters (amplitudes and phases for Fourier ones)."""


def default_examples() -> list[Path]:
    """The example images shipped in ``app/examples``: the synthetic ``shapes`` ones (the shipped
    model's domain) first, then the COCO ones."""
    files = [p for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: (not p.name.startswith("shapes"), p.name))


def _define_image_input() -> type[gr.Image]:
    """``gr.Image`` whose upload decoding errors become a readable ``gr.Error`` (not a stack trace).

    A subclass, because Gradio rebuilds a session's component from its class when an event
    updates it (so patching one instance does not last). Gradio also writes a ``.pyi`` stub next
    to the module of every Component subclass it sees; that side effect (which would fail on a
    read-only install) is switched off while this class is created.
    """
    import gradio.component_meta as component_meta

    write_stub = component_meta.create_or_modify_pyi
    component_meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:

        class ImageInput(gr.Image):
            is_template = True  # the frontend renders it with its Image component

            def preprocess(self, payload: Any) -> Any:
                try:
                    return super().preprocess(payload)
                except gr.Error:
                    raise
                except UnidentifiedImageError:
                    name = getattr(payload, "orig_name", None) or "The upload"
                    message = (
                        f"{name} is not an image file that can be read (PNG, JPEG, WebP, BMP, TIFF, ...)."
                    )
                    log.info("upload refused: %s", message)
                    raise gr.Error(message, print_exception=False) from None
                except Exception as e:  # noqa: BLE001 - PIL raises many types on garbage uploads
                    name = getattr(payload, "orig_name", None) or "The upload"
                    message = f"{name} is not an image that can be read ({type(e).__name__})."
                    log.info("upload refused: %s", message)
                    raise gr.Error(message, print_exception=False) from None

    finally:
        component_meta.create_or_modify_pyi = write_stub
    return ImageInput


ImageInput = _define_image_input()


def _user_errors(fn: Callable) -> Callable:
    """Turn DemoError into gr.Error and anything unexpected into a short gr.Error.

    A user's mistake (DemoError) is logged as one line; only a bug is logged with its traceback,
    once, here: the gr.Error carries ``print_exception=False`` so that Gradio does not print
    another.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except DemoError as e:
            log.info("%s: %s", fn.__name__, e)
            raise gr.Error(str(e), print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - the UI must get a message, never a trace
            log.exception("demo handler %s failed", fn.__name__)
            raise gr.Error(
                f"Something went wrong ({type(e).__name__}: {e}). Details are in the server log.",
                print_exception=False,
            ) from None

    return wrapper


def _warn(messages: Sequence[str]) -> None:
    for m in messages:
        gr.Warning(m)


def build_app(
    checkpoints: Mapping[str, str | Path] | None = None,
    examples: Sequence[str | Path] | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
) -> gr.Blocks:
    """The demo's ``gr.Blocks`` (queue enabled). ``checkpoints``: ``{chooser name: path or "default"}``."""
    demo_state = Demo(checkpoints, max_side)
    demo_api.set_demo(demo_state)  # the module-level app.demo.segment / inspect use the same models
    examples = [str(p) for p in (default_examples() if examples is None else examples)]
    plot_names = ("scm_map", "scm_weights", "scm_curves", "icm_map", "icm_references", "icm_curves")

    # ------------------------------------------------------------------ handlers (thin wrappers)
    # The API endpoints return images at the processed resolution (the original one unless it was
    # downscaled to --max-side); the UI shows small ones enlarged (LoadedImage.to_display) and maps
    # clicks back through that enlargement.
    @_user_errors
    def segment(image: str | None, checkpoint: str | None):
        """Panoptic segmentation of an image: (overlay, segments table, semantic map)."""
        _warn(demo_state.image(image).warnings)
        result = demo_state.segment(image, checkpoint)
        if result.segments.empty:
            gr.Warning("The model found no segment in this image.")
        return result.overlay, result.segments, result.semantic

    @_user_errors
    def inspect(image: str | None, row: float | None, col: float | None, level: str, checkpoint: str | None):
        """Correlations learned by SCM and ICM at pixel (row, col) of the original image, at an FPN level."""
        r = demo_state.inspect(image, row, col, level, checkpoint)
        return (r.highlight, *(getattr(r, n) for n in plot_names), r.info)

    def segment_ui(image: str | None, checkpoint: str | None):
        empty = (None,) * len(plot_names) + ("",)
        if image is None:  # cleared: empty the outputs, no error
            return ("", None, None, None, None, None, *empty)
        overlay, table, semantic = segment(image, checkpoint)
        loaded = demo_state.image(image)
        note = demo_state.domain_note(image, checkpoint)  # above the result: labels it cannot give
        return (note, loaded.to_display(overlay), table, loaded.to_display(semantic), None, None, *empty)

    def training_data_ui(checkpoint: str | None) -> str:
        """The note beside the chooser; a checkpoint that cannot load says so there too."""
        try:
            return demo_state.training_data(checkpoint).markdown
        except DemoError as e:
            return f"**Trained on:** unknown ({e})"

    def inspect_ui(
        image: str | None, row: float | None, col: float | None, level: str, checkpoint: str | None
    ):
        highlight, *rest = inspect(image, row, col, level, checkpoint)
        return (demo_state.image(image).to_display(highlight), *rest)

    @_user_errors
    def on_click(image: str | None, level: str, checkpoint: str | None, evt: gr.SelectData):
        """A click on the shown panoptic result: displayed pixel → original-image pixel → inspect."""
        if image is None:
            raise DemoError("No image loaded: pick an example or upload an image, then click on it.")
        index = evt.index
        if not isinstance(index, (list, tuple)) or len(index) != 2 or index[0] is None:
            raise DemoError("Click inside the image.")
        x, y = int(index[0]), int(index[1])  # Gradio gives [x, y] in the shown image's pixels
        loaded = demo_state.image(image)
        row, col = loaded.to_original(y, x, loaded.display_factor)
        return (row, col, *inspect_ui(image, row, col, level, checkpoint))

    def on_level(image: str | None, row: float | None, col: float | None, level: str, checkpoint: str | None):
        if image is None or row is None or col is None:
            return (gr.skip(),) * (2 + len(plot_names))
        return inspect_ui(image, row, col, level, checkpoint)

    # ------------------------------------------------------------------ layout
    with gr.Blocks(title="CFNet demo", analytics_enabled=False) as app:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                image_in = ImageInput(
                    type="filepath",
                    image_mode=None,
                    label="Input image",
                    sources=["upload", "clipboard"],
                    elem_id="input-image",
                )
                checkpoint = gr.Dropdown(
                    choices=demo_state.checkpoint_names,
                    value=demo_state.default_checkpoint,
                    label="Checkpoint",
                    elem_id="checkpoint",
                )
                training_data = gr.Markdown(elem_id="checkpoint-data")
                segment_btn = gr.Button("Segment", variant="primary", elem_id="segment-button")
                if examples:
                    gr.Examples(
                        examples=[[p] for p in examples],
                        inputs=[image_in],
                        label="Examples",
                        elem_id="examples",
                    )
            with gr.Column(scale=1):
                notice = gr.Markdown(elem_id="domain-notice")
                overlay = gr.Image(
                    label="Panoptic result — click a pixel to inspect it",
                    type="numpy",
                    format="png",
                    interactive=False,
                    elem_id="overlay",
                    buttons=["fullscreen", "download"],
                )
                semantic = gr.Image(
                    label="Semantic map (argmax of the semantic branch)",
                    type="numpy",
                    format="png",
                    interactive=False,
                    elem_id="semantic",
                    height=320,  # shown scaled to fit; only the panoptic result is clicked
                )
        segments = gr.Dataframe(
            headers=TABLE_HEADERS, label="Segments", interactive=False, elem_id="segments"
        )
        with gr.Row(equal_height=True):
            level = gr.Radio(
                list(LEVEL_CHOICES), value="P3", label="FPN level (SCM: P2–P5, ICM: P2–P6)", elem_id="level"
            )
            row = gr.Number(None, label="row (original-image pixels)", precision=0, minimum=0, elem_id="row")
            col = gr.Number(None, label="col (original-image pixels)", precision=0, minimum=0, elem_id="col")
            inspect_btn = gr.Button("Inspect pixel", elem_id="inspect-button")
        info = gr.Markdown(label="summary", elem_id="inspect-info")
        with gr.Row():
            with gr.Column():
                gr.Markdown("### Semantic correlation module (SCM)")
                scm_map = gr.Plot(label="SCM: cor₂d(u, ·)", elem_id="scm-map")
                scm_weights = gr.Plot(label="SCM: Eq. 9 row / column weights", elem_id="scm-weights")
                scm_curves = gr.Plot(label="SCM: correlation functions G", elem_id="scm-curves")
            with gr.Column():
                gr.Markdown("### Instance correlation module (ICM)")
                icm_map = gr.Plot(label="ICM: cor₂d(u, ·)", elem_id="icm-map")
                icm_refs = gr.Plot(label="ICM: reference-point correlations", elem_id="icm-references")
                icm_curves = gr.Plot(label="ICM: correlation functions G", elem_id="icm-curves")
        plots = [scm_map, scm_weights, scm_curves, icm_map, icm_refs, icm_curves]
        inspect_outputs = [overlay, *plots, info]

        # ------------------------------------------------------------------ events
        ui = {"api_visibility": "private", "concurrency_id": "model"}
        gr.on(
            [segment_btn.click, image_in.change, checkpoint.change],
            segment_ui,
            [image_in, checkpoint],
            [notice, overlay, segments, semantic, row, col, *plots, info],
            **ui,
        )
        gr.on([app.load, checkpoint.change], training_data_ui, [checkpoint], [training_data], **ui)
        inspect_btn.click(inspect_ui, [image_in, row, col, level, checkpoint], inspect_outputs, **ui)
        # Rapid clicks: only the latest pending one runs.
        overlay.select(
            on_click,
            [image_in, level, checkpoint],
            [row, col, *inspect_outputs],
            trigger_mode="always_last",
            **ui,
        )
        level.change(
            on_level,
            [image_in, row, col, level, checkpoint],
            inspect_outputs,
            trigger_mode="always_last",
            **ui,
        )
        # The API: the same handlers without the display enlargement, on triggers the page never shows.
        api_segment = gr.Button(visible=False)
        api_inspect = gr.Button(visible=False)
        api_segment.click(
            segment,
            [image_in, checkpoint],
            [overlay, segments, semantic],
            api_name="segment",
            concurrency_id="model",
        )
        api_inspect.click(
            inspect,
            [image_in, row, col, level, checkpoint],
            inspect_outputs,
            api_name="inspect",
            concurrency_id="model",
        )
    app.queue(max_size=64, default_concurrency_limit=2)
    return app


# ----------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        default="default",
        help="checkpoint offered first: a .pt path or 'default' (the shipped shapes-tiny model)",
    )
    parser.add_argument(
        "--checkpoint-dir", default=None, help="folder whose *.pt files are added to the checkpoint chooser"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, local only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument(
        "--max-side",
        type=int,
        default=DEFAULT_MAX_SIDE,
        help="larger images are downscaled to this longer side first (default: %(default)s)",
    )
    parser.add_argument(
        "--examples", default=None, help="folder of example images (default: the shipped app/examples)"
    )
    parser.add_argument(
        "--share", action="store_true", help="also create a public gradio.live link (off by default)"
    )


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    if not 1 <= args.port <= 65535:
        print(f"cfnet demo: --port must be in 1..65535, got {args.port}")
        return 2
    try:
        checkpoints = discover_checkpoints(args.checkpoint, args.checkpoint_dir)
        if args.checkpoint != "default" and not Path(args.checkpoint).is_file():
            raise DemoError(f"--checkpoint {args.checkpoint}: no such file")
        if args.examples is not None:
            folder = Path(args.examples)
            if not folder.is_dir():
                raise DemoError(f"--examples {folder}: not a folder")
            examples = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            folder, examples = EXAMPLES_DIR, default_examples()
        app = build_app(checkpoints, examples, args.max_side)
    except DemoError as e:
        print(f"cfnet demo: {e}")
        return 2
    # Load a checkpoint now: a broken one is reported at start, and a demo without any usable model
    # does not start at all (every request would fail).
    usable = None
    for name in checkpoints:
        try:
            demo_api.get_demo().model(name)
        except DemoError as e:
            log.warning("%s", e)
            continue
        usable = name
        break
    if usable is None:
        print(f"cfnet demo: no checkpoint can be loaded ({', '.join(checkpoints.values())}); not starting",
              file=sys.stderr)  # fmt: skip
        return 2
    allowed = [str(folder.resolve())]
    app.launch(
        server_name=args.host, server_port=args.port, share=args.share, allowed_paths=allowed, show_error=True
    )
    return 0
