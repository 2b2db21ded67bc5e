"""The demo's logic (app/demo.py, images.py, checkpoints.py, figures.py), its Gradio app and API
(gradio_client), and bad input.

Uses the shipped shapes-tiny checkpoint when it is there, otherwise a freshly built one saved
through ``save_checkpoint`` (the checks here are about plumbing and coordinates, not quality).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from app_server import running_demo
from PIL import Image

import cfnet
from app import demo as demo_api
from app.checkpoints import COCO_CHECKPOINT_HINT, DEFAULT_CHECKPOINT_NAME, discover_checkpoints
from app.errors import DemoError
from app.images import DEFAULT_MAX_SIDE, LoadedImage, load_image
from cfnet.checkpoint import DEFAULT_CHECKPOINT, save_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "app" / "examples"
SHAPES_EXAMPLE = EXAMPLES / "shapes-val-000000.png"
COCO_EXAMPLE = EXAMPLES / "000000039769.png"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_checkpoints(folder: Path) -> dict[str, str]:
    """``{name: path}``: the model under test, an ablation without SCM/ICM, one that does not fit."""
    if DEFAULT_CHECKPOINT.is_file():
        main = "default"
        data = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    else:
        torch.manual_seed(0)
        cfg = cfnet.get_config("shapes-tiny")
        main = str(save_checkpoint(folder / "shapes-tiny-fresh.pt", model=cfnet.build_model(cfg), cfg=cfg))
        data = torch.load(main, map_location="cpu", weights_only=True)
    # Table 5/6 ablation "none/none": same architecture minus the two modules' weights.
    ablation = dict(data)
    ablation["config"] = {**data["config"]}
    ablation["config"]["model"] = {
        **data["config"]["model"],
        "semantic": {**data["config"]["model"]["semantic"], "module": "none"},
        "instance": {**data["config"]["model"]["instance"], "position": "none"},
    }
    ablation["model"] = {
        k: v
        for k, v in data["model"].items()
        if not k.startswith(("semantic_head.module.", "instance_head.position."))
    }
    torch.save(ablation, folder / "ablation-none.pt")
    # A checkpoint that does not match the code: N = 3 in the config, weights for N = 5.
    broken = dict(data)
    broken["config"] = {**data["config"]}
    broken["config"]["model"] = {
        **data["config"]["model"],
        "correlation": {**data["config"]["model"]["correlation"], "num_levels": 3},
    }
    torch.save(broken, folder / "mismatched.pt")
    return {
        "model": main,
        "ablation": str(folder / "ablation-none.pt"),
        "mismatched": str(folder / "mismatched.pt"),
    }


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    return make_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="module")
def demo(checkpoints) -> demo_api.Demo:
    return demo_api.configure(checkpoints, max_side=1024)


@pytest.fixture(scope="module")
def model(demo):
    return demo.model("model").model


# ----------------------------------------------------------------------------------------------
# the Demo and its API (app.demo)


def test_segment_outputs(demo):
    overlay, table, semantic = demo_api.segment(str(SHAPES_EXAMPLE), "model")
    assert overlay.shape == (128, 128, 3) and overlay.dtype == np.uint8
    assert semantic.shape == (128, 128, 3) and semantic.dtype == np.uint8
    assert list(table.columns) == demo_api.TABLE_HEADERS
    assert set(table["type"]) <= {"thing", "stuff"}
    assert (table["area (px)"] > 0).all() and table["area (px)"].sum() <= 128 * 128
    assert not np.array_equal(overlay, np.asarray(Image.open(SHAPES_EXAMPLE).convert("RGB"))) or table.empty


def test_inspect_outputs_and_map_equal_the_module(demo, model):
    r = demo_api.inspect(str(SHAPES_EXAMPLE), 40, 90, "P3", "model")
    assert r.highlight.shape == (128, 128, 3) and r.highlight.dtype == np.uint8
    figures = [r.scm_map, r.scm_weights, r.scm_curves, r.icm_map, r.icm_references, r.icm_curves]
    assert all(isinstance(f, go.Figure) for f in figures)
    assert "row 40, col 90" in r.info and "P3" in r.info
    # The clicked pixel's centre (40.5, 90.5) on the 128×128 input → P3 (stride 8) cell (5, 11).
    assert r.data.scm.feature_point == (5, 11) and r.data.icm.feature_point == (5, 11)
    image = (
        torch.from_numpy(np.asarray(Image.open(SHAPES_EXAMPLE).convert("RGB")).copy()).permute(2, 0, 1)
        / 255.0
    )
    with torch.no_grad():
        batch, _ = model.preprocess([image])
        features = model.features(batch)
        scm_direct = model.semantic_head.module.correlation_map(features["p3"], (5, 11))[0]
        icm_in = model.instance_head.level_features(features)[1]  # P3
        icm_direct = model.instance_head.position.correlation_map(icm_in, (5, 11))[0]
    np.testing.assert_allclose(r.data.scm.correlation_map, scm_direct.double().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.data.icm.correlation_map, icm_direct.double().numpy(), rtol=1e-5, atol=1e-6)
    heat = next(t for t in r.scm_map.data if t.type == "heatmap")
    np.testing.assert_allclose(np.asarray(heat.z), scm_direct.double().numpy(), rtol=1e-5, atol=1e-6)
    mark = next(t for t in r.scm_map.data if t.name == "clicked point")
    assert (mark.x[0], mark.y[0]) == (90.5, 40.5)


def test_large_image_is_downscaled_and_clicks_map_right(demo):
    h, w = 2000, 3000
    big = np.empty((h, w, 3), np.uint8)  # a smooth gradient (not an all-void blank)
    big[..., 0] = (np.arange(h) * 255 // h)[:, None]
    big[..., 1] = (np.arange(w) * 255 // w)[None, :]
    big[..., 2] = 128
    loaded = demo.image(big)
    assert loaded.original_size == (2000, 3000) and loaded.size == (683, 1024)
    assert any("downscaled" in m for m in loaded.warnings)
    r = demo_api.inspect(big, 1500, 2400, "P3", "model")
    # 683×1024 → model input 128×192 (no padding). Centre (1500.5, 2400.5)·(128/2000, 192/3000)
    # = (96.03, 153.63) → P3 (16×24) cell (12, 19); P2 (32×48) cell (24, 38); ICM at P2 runs at stride 8.
    assert r.data.input_size == (128, 192) and r.data.feature_point == (12, 19)
    assert r.data.scm.feature_point == (12, 19)
    assert r.highlight.shape == (683, 1024, 3)
    p2 = demo_api.inspect(big, 1500, 2400, "P2", "model").data
    assert p2.scm.feature_point == (24, 38) and p2.icm.feature_point == (12, 19)
    # A click on the enlarged/shown image maps back to original pixels through pixel centres.
    assert loaded.to_original(512, 768) == (
        1500,
        2251,
    )  # (512.5·2000/683, 768.5·3000/1024) = (1500.7, 2251.5)
    small = LoadedImage(np.zeros((128, 128, 3), np.uint8), (128, 128), "x")
    assert small.display_factor == 4 and small.to_original(511, 3, 4) == (127, 0)


def test_ablation_checkpoint_shows_notes(demo):
    r = demo_api.inspect(str(SHAPES_EXAMPLE), 10, 10, "P4", "ablation")
    assert r.data.scm is None and r.data.icm is None
    for fig, text in ((r.scm_map, "no SCM"), (r.icm_curves, "no ICM")):
        assert text in fig.layout.annotations[0].text.replace("<br>", " ")
    assert "no SCM" in r.info and "no ICM" in r.info


def test_training_data_beside_the_chooser(demo, checkpoints):
    info = demo.training_data("model")
    assert info.categories == "shapes" and info.synthetic
    assert "`shapes`" in info.markdown and COCO_CHECKPOINT_HINT in info.markdown
    if checkpoints["model"] == "default" and (DEFAULT_CHECKPOINT.with_suffix(".json")).is_file():
        assert "2000 training images of 128 px" in info.markdown  # from cfnet/weights/shapes-tiny.json
    # No card beside it: the category set comes from the checkpoint's config, classes listed.
    ablation = demo.training_data("ablation")
    assert ablation.categories == "shapes" and "circle" in ablation.markdown


def test_photo_on_a_shapes_model_is_flagged_above_the_result(demo, tmp_path):
    note = demo.domain_note(str(COCO_EXAMPLE), "model")
    assert "only the synthetic `shapes` classes" in note
    assert "cfnet demo --checkpoint-dir DIR" in note
    # The bundled synthetic examples are its domain, also as the temporary copy Gradio hands over.
    assert demo.domain_note(str(SHAPES_EXAMPLE), "model") == ""
    copy = tmp_path / "upload.png"
    copy.write_bytes(SHAPES_EXAMPLE.read_bytes())
    assert demo.domain_note(str(copy), "model") == ""
    # The warning heads the inspect summary, and the correlation maps are still there.
    r = demo_api.inspect(str(COCO_EXAMPLE), 100, 200, "P3", "model")
    assert r.info.startswith(note)
    assert r.data.scm is not None and isinstance(r.scm_map, go.Figure) and len(r.scm_map.data) > 0


def test_a_model_trained_on_other_classes_is_not_flagged(checkpoints, tmp_path):
    # The card decides the training data (no model is loaded for it): a COCO-trained checkpoint.
    path = tmp_path / "coco-model.pt"
    path.write_bytes(Path(checkpoints["ablation"]).read_bytes())
    path.with_suffix(".json").write_text('{"config": {"model": {"categories": "coco"}}}')
    demo = demo_api.Demo({"coco": str(path)})
    info = demo.training_data("coco")
    assert info.categories == "coco" and not info.synthetic and "`coco`" in info.markdown
    assert demo.domain_note(str(COCO_EXAMPLE), "coco") == ""


def test_levels_outside_a_branch_show_notes(demo):
    r = demo_api.inspect(str(SHAPES_EXAMPLE), 10, 10, "P6", "model")
    assert r.data.scm is None and "P2, P3, P4, P5 only" in r.scm_map.layout.annotations[0].text.replace(
        "<br>", " "
    )


# ----------------------------------------------------------------------------------------------
# bad input


def _write(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def test_image_conversions(tmp_path):
    gray = load_image(_write(tmp_path / "g.png", np.full((20, 30), 77, np.uint8)))
    assert gray.array.shape == (20, 30, 3) and (gray.array == 77).all()
    assert any("grayscale" in m for m in gray.warnings)
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:10, :, 3] = 255  # top opaque red, bottom transparent → white
    out = load_image(_write(tmp_path / "a.png", rgba))
    np.testing.assert_array_equal(out.array[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(out.array[15, 0], [255, 255, 255])
    assert any("alpha" in m for m in out.warnings)
    deep = (np.arange(20 * 30).reshape(20, 30) * 100).astype(np.uint16)
    out16 = load_image(_write(tmp_path / "d.png", deep))
    np.testing.assert_array_equal(out16.array[..., 0], np.round(deep / 257.0).astype(np.uint8))
    assert any("16 bits" in m for m in out16.warnings)
    pal = load_image(Image.fromarray(np.full((20, 30, 3), 9, np.uint8)).convert("P"))
    assert pal.array.shape == (20, 30, 3)
    floats = load_image(np.full((20, 30, 3), 0.5, np.float32))
    assert (floats.array == 128).all()


def test_bad_images_give_clear_errors(tmp_path):
    with pytest.raises(DemoError, match="No image loaded"):
        load_image(None)
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    with pytest.raises(DemoError, match="notes.png: not an image"):
        load_image(text)
    good = _write(
        tmp_path / "cut.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    )
    cut = tmp_path / "truncated.png"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(DemoError, match="truncated.png: the image file is corrupt or truncated"):
        load_image(cut)
    with pytest.raises(DemoError, match="at least"):
        load_image(np.zeros((4, 40, 3), np.uint8))
    with pytest.raises(DemoError, match="shape"):
        load_image(np.zeros((10, 10, 5), np.uint8))


def test_bad_clicks_levels_and_checkpoints(demo):
    with pytest.raises(DemoError, match="No image loaded"):
        demo_api.inspect(None, 3, 3, "P3", "model")
    with pytest.raises(DemoError, match="No pixel chosen"):
        demo_api.inspect(str(SHAPES_EXAMPLE), None, 3, "P3", "model")
    with pytest.raises(DemoError, match="outside the image"):
        demo_api.inspect(str(SHAPES_EXAMPLE), 128, 3, "P3", "model")
    with pytest.raises(DemoError, match="level"):
        demo_api.inspect(str(SHAPES_EXAMPLE), 3, 3, "P9", "model")
    with pytest.raises(DemoError, match="unknown checkpoint"):
        demo_api.segment(str(SHAPES_EXAMPLE), "nope")
    with pytest.raises(DemoError, match="'mismatched' cannot be used.*do not match"):
        demo_api.segment(str(SHAPES_EXAMPLE), "mismatched")


def test_discover_checkpoints_and_cli_defaults(tmp_path):
    (tmp_path / "b.pt").write_bytes(b"")
    (tmp_path / "a.pt").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    found = discover_checkpoints("default", tmp_path)
    assert list(found) == [DEFAULT_CHECKPOINT_NAME, "a.pt", "b.pt"]
    with pytest.raises(DemoError, match="not a folder"):
        discover_checkpoints("default", tmp_path / "missing")
    from app import main as app_main

    parser = argparse.ArgumentParser()
    app_main.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.checkpoint, args.host, args.port, args.share) == ("default", "127.0.0.1", 7860, False)
    assert args.max_side == DEFAULT_MAX_SIDE
    assert parser.parse_args(["--share", "--max-side", "512"]).share is True
    assert app_main.main(parser.parse_args(["--checkpoint", str(tmp_path / "missing.pt")])) == 2


# ----------------------------------------------------------------------------------------------
# the app through gradio_client


@pytest.fixture(scope="module")
def client(checkpoints, demo):
    from gradio_client import Client

    with running_demo(checkpoints) as url:
        yield Client(url, verbose=False)


def test_api_segment_and_inspect(client):
    from gradio_client import handle_file

    overlay, table, semantic = client.predict(handle_file(str(SHAPES_EXAMPLE)), api_name="/segment")
    assert np.asarray(Image.open(overlay)).shape == (128, 128, 3)
    assert np.asarray(Image.open(semantic)).shape == (128, 128, 3)
    assert table["headers"] == demo_api.TABLE_HEADERS
    out = client.predict(handle_file(str(SHAPES_EXAMPLE)), 40, 90, "P3", api_name="/inspect")
    highlight, *plots, info = out
    assert np.asarray(Image.open(highlight)).shape == (128, 128, 3)
    assert len(plots) == 6 and all(p["type"] == "plotly" for p in plots)
    assert "row 40, col 90" in info and "cell (row 5, col 11)" in info
    # A larger (non-shapes) image, level P5, explicit checkpoint.
    out = client.predict(handle_file(str(COCO_EXAMPLE)), 200, 300, "P5", "model", api_name="/inspect")
    assert "P5" in out[-1]


def test_api_bad_input_gives_messages(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(AppError, match="notes.png is not an image file that can be read"):
        client.predict(handle_file(str(text)), api_name="/segment")
    with pytest.raises(AppError, match="No image loaded"):
        client.predict(None, 3, 3, "P3", api_name="/inspect")
    with pytest.raises(AppError, match="outside the image"):
        client.predict(handle_file(str(SHAPES_EXAMPLE)), 500, 3, "P3", api_name="/inspect")
    with pytest.raises(AppError, match="cannot be used"):
        client.predict(handle_file(str(SHAPES_EXAMPLE)), "mismatched", api_name="/segment")
    gray16 = tmp_path / "gray16.png"
    Image.fromarray((np.arange(64 * 80).reshape(64, 80) * 12).astype(np.uint16)).save(gray16)
    overlay, _, _ = client.predict(handle_file(str(gray16)), api_name="/segment")
    assert np.asarray(Image.open(overlay)).shape == (64, 80, 3)
