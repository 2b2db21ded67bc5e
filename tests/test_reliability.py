"""Faults found by a user probe: each test reproduces one (it failed before the fix).

Every user mistake must end in one clear line naming the file / field / argument and exit code 2,
never a traceback. Runs a shrunken ``shapes-tiny`` on a few 64-px ``shapes`` images.
"""

from __future__ import annotations

import errno
import json
import shutil

import pytest
import torch
from tiny import TINY_MODEL, TINY_TRAINING

from cfnet.cli import main as cli
from cfnet.config import ConfigError, get_config

TRAIN = [*TINY_TRAINING, "data.min_size_train=[64]"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from cfnet.data import generate_shapes

    root = tmp_path_factory.mktemp("shapes")
    generate_shapes(root, num_train=4, num_val=2, size=64, seed=3, progress=False)
    return root


def _train_args(shapes, out, *options, over=()):
    return ["train", "--preset", "shapes-tiny", "--data", str(shapes), "--out", str(out), "--no-progress",
            *options, *TRAIN, *over]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# 9: solver periods / iterations are range-checked


@pytest.mark.parametrize(
    "override",
    ["solver.checkpoint_period=0", "solver.log_period=0", "solver.max_iters=0", "solver.batch_size=0"],
)
def test_solver_ranges_are_checked_naming_the_key(override, shapes, tmp_path, capsys):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=key):
        from cfnet.config import validate

        validate(get_config("shapes-tiny", [override]))
    assert cli(_train_args(shapes, tmp_path / "run", "--no-eval", over=[override])) == 2
    err = capsys.readouterr().err
    assert key in err and "done already" not in err and "Traceback" not in err
    assert not (tmp_path / "run" / "last.pt").exists()


# ----------------------------------------------------------------------------------------------
# 6: --resume from a weights-only checkpoint


def test_resume_from_weights_only_checkpoint_says_so(shapes, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(_train_args(shapes, run, "--no-eval", "--max-iters", "1")) == 0
    shutil.copy(run / "model_final.pt", run / "last.pt")
    assert cli(_train_args(shapes, run, "--no-eval", "--max-iters", "2", "--resume")) == 2
    err = capsys.readouterr().err
    assert "last.pt" in err and "no optimiser state" in err


# ----------------------------------------------------------------------------------------------
# 4: --resume finishes a run that crashed after the last last.pt


def test_resume_of_a_finished_run_writes_what_is_missing(shapes, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(_train_args(shapes, run, "--max-iters", "2")) == 0
    final = torch.load(run / "model_final.pt", weights_only=True)
    metrics = json.loads((run / "eval.json").read_text())
    # the crash: last.pt written, model_final.pt and the final evaluation not
    (run / "model_final.pt").unlink()
    (run / "eval.json").unlink()
    shutil.rmtree(run / "eval")
    capsys.readouterr()
    assert cli(_train_args(shapes, run, "--max-iters", "2", "--resume")) == 0
    again = torch.load(run / "model_final.pt", weights_only=True)
    assert again["iteration"] == 2 and again["optimizer"] is None
    for k, v in final["model"].items():
        assert torch.equal(v, again["model"][k]), k
    assert json.loads((run / "eval.json").read_text()) == metrics
    # Nothing missing: done already, nothing rewritten.
    stamp = (run / "model_final.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert cli(_train_args(shapes, run, "--max-iters", "2", "--resume")) == 0
    assert "done already" in capsys.readouterr().out
    assert (run / "model_final.pt").stat().st_mtime_ns == stamp
    # export of a run without model_final.pt: one line, exit 2
    (run / "model_final.pt").unlink()
    assert cli(["export", "--run", str(run), "--out", str(tmp_path / "m.pt")]) == 2
    assert "model_final.pt" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# 8: disk full while saving; stale temp files of killed writes


def test_disk_full_while_saving_is_one_message_and_keeps_last_good(shapes, tmp_path, capsys, monkeypatch):
    import os

    run = tmp_path / "run"
    assert cli(_train_args(shapes, run, "--no-eval", "--max-iters", "1")) == 0
    before = (run / "last.pt").read_bytes()
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, b):
            self.n += len(b)
            if self.n > 4096:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: Full(real_fdopen(fd, mode, *a, **k)))
    capsys.readouterr()
    code = cli(_train_args(shapes, run, "--no-eval", "--max-iters", "2", "--resume"))
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code != 0
    assert "No space left on device" in err and "last.pt" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert (run / "last.pt").read_bytes() == before
    assert not list(run.glob(".*.tmp"))


def test_stale_temp_files_are_removed_at_start(shapes, tmp_path):
    run = tmp_path / "run"
    assert cli(_train_args(shapes, run, "--no-eval", "--max-iters", "1")) == 0
    for name in (".last.pt.abc123.tmp", ".model_final.pt.x_9.tmp"):
        (run / name).write_bytes(b"half a checkpoint")
    (run / "keep.tmp").write_text("not ours")
    assert cli(_train_args(shapes, run, "--no-eval", "--max-iters", "2", "--resume")) == 0
    assert sorted(p.name for p in run.glob("*.tmp")) == ["keep.tmp"]
    assert not list(run.glob(".*.tmp"))


# ----------------------------------------------------------------------------------------------
# checkpoints: 7 (malicious files), 13 (non-finite weights), 15 (category clash names data sets)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from cfnet.checkpoint import save_checkpoint
    from cfnet.model import build_model

    torch.manual_seed(0)
    cfg = get_config("shapes-tiny", [*TINY_MODEL, "model.inference.score_thr=0.001",
                                     "model.inference.update_thr=0.001"])  # fmt: skip
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model=build_model(cfg).eval(), cfg=cfg)
    return path


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("echo should-never-run",))


def test_malicious_checkpoint_message_never_suggests_turning_safety_off(tmp_path):
    from cfnet.checkpoint import CheckpointError, read_checkpoint

    evil = tmp_path / "evil.pt"
    torch.save({"format": "cfnet-checkpoint", "x": _RunsCode()}, evil)
    old_style = tmp_path / "old.pt"
    torch.save({"x": _RunsCode()}, old_style, _use_new_zipfile_serialization=False)
    for path in (evil, old_style):
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(path)
        msg = str(info.value)
        assert str(path) in msg and "refused" in msg and "not plain weights" in msg, msg
        assert "corrupted" not in msg and "truncated" not in msg, msg
        assert "weights_only" not in msg and "will likely succeed" not in msg, msg


def test_non_finite_weights_are_refused_naming_the_tensor(tiny_ckpt, shapes, tmp_path, capsys):
    data = torch.load(tiny_ckpt, weights_only=True)
    name = next(k for k, v in data["model"].items() if v.is_floating_point() and v.numel() > 1)
    data["model"][name] = data["model"][name].clone()
    data["model"][name].view(-1)[1] = float("nan")
    bad = tmp_path / "nan.pt"
    torch.save(data, bad)
    image = sorted((shapes / "val" / "images").iterdir())[0]
    assert cli(["predict", "--checkpoint", str(bad), str(image), "--out", str(tmp_path / "p"),
                "--no-progress"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert str(bad) in err and name in err and "NaN" in err
    assert cli(["eval", "--checkpoint", str(bad), "--data", str(shapes / "val"), "--out",
                str(tmp_path / "e"), "--no-progress"]) == 2  # fmt: skip
    assert name in capsys.readouterr().err


def test_category_clash_names_both_data_sets(shapes, tmp_path, capsys):
    from cfnet.checkpoint import save_checkpoint
    from cfnet.model import build_model

    cfg = get_config("shapes-tiny", [*TINY_MODEL, "model.categories=coco"])
    coco_ckpt = save_checkpoint(tmp_path / "coco.pt", model=build_model(cfg), cfg=cfg)
    assert cli(["eval", "--checkpoint", str(coco_ckpt), "--data", str(shapes / "val"), "--out",
                str(tmp_path / "e"), "--no-progress"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "coco" in err and "133" in err  # the checkpoint's data set
    assert str(shapes / "val" / "panoptic.json") in err and "circle" in err  # the split's
    assert "Traceback" not in err


# ----------------------------------------------------------------------------------------------
# 1: eval names its outputs by image id; 2: predict keeps every input's output


def _split_with(tmp_path, shapes, names):
    """A copy of the val split whose images are renamed to ``names`` (one per image)."""
    from PIL import Image

    root = tmp_path / "split"
    shutil.copytree(shapes / "val", root)
    data = json.loads((root / "panoptic.json").read_text())
    for im, name in zip(data["images"], names):
        src = root / "images" / im["file_name"]
        Image.open(src).convert("RGB").save(root / "images" / name, quality=100)
        if name != im["file_name"]:
            src.unlink()
        im["file_name"] = name
    (root / "panoptic.json").write_text(json.dumps(data))
    return root


def test_eval_outputs_are_named_by_image_id_not_stem(tiny_ckpt, shapes, tmp_path):
    import numpy as np

    from cfnet.checkpoint import load_checkpoint
    from cfnet.data import PanopticDataset
    from cfnet.panoptic_io import read_panoptic_png

    root = _split_with(tmp_path, shapes, ["000000.png", "000000.jpg"])
    out = tmp_path / "ev"
    assert cli(["eval", "--checkpoint", str(tiny_ckpt), "--data", str(root), "--out", str(out),
                "--no-progress"]) == 0  # fmt: skip
    pred = json.loads((out / "panoptic.json").read_text())
    names = [a["file_name"] for a in pred["annotations"]]
    assert len(set(names)) == 2, names
    model, _, _ = load_checkpoint(tiny_ckpt)
    ds = PanopticDataset(root, categories=model.categories)
    for i, a in enumerate(pred["annotations"]):
        image, target = ds[i]
        assert a["image_id"] == target["image_id"]
        with torch.no_grad():
            expected = model([image])[0]["panoptic_seg"].numpy()
        got = read_panoptic_png(out / "panoptic" / a["file_name"])
        # same segmentation (ids may be renumbered by nothing here: written as predicted)
        assert np.array_equal(got, expected), a["file_name"]


def test_eval_refuses_true_duplicates(tiny_ckpt, shapes, tmp_path, capsys):
    root = _split_with(tmp_path, shapes, ["a.png", "b.png"])
    data = json.loads((root / "panoptic.json").read_text())
    data["images"][1]["file_name"] = "a.png"  # two image ids, one file
    (root / "panoptic.json").write_text(json.dumps(data))
    assert cli(["eval", "--checkpoint", str(tiny_ckpt), "--data", str(root), "--out", str(tmp_path / "e"),
                "--no-progress"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "a.png" in err and "twice" in err and "Traceback" not in err


def test_predict_keeps_every_output_and_unique_ids(tiny_ckpt, shapes, tmp_path):
    from PIL import Image

    srcs = sorted((shapes / "val" / "images").iterdir())
    inputs = tmp_path / "in"
    inputs.mkdir()
    names = ["x.png", "x.jpg", "x_1.png"]
    for k, name in enumerate(names):
        Image.open(srcs[k % len(srcs)]).convert("RGB").save(inputs / name)
    out = tmp_path / "pred"
    assert cli(["predict", "--checkpoint", str(tiny_ckpt), *(str(inputs / n) for n in names), "--out",
                str(out), "--no-progress"]) == 0  # fmt: skip
    data = json.loads((out / "predictions.json").read_text())
    ids = [a["image_id"] for a in data["annotations"]]
    files = [a["file_name"] for a in data["annotations"]]
    assert len(set(ids)) == 3 and len(set(files)) == 3, (ids, files)
    assert [im["path"] for im in data["images"]] == [str(inputs / n) for n in names]
    assert len(list((out / "panoptic").iterdir())) == 3 and len(list((out / "overlay").iterdir())) == 3
    assert ids[0] == "x" and ids[2] == "x_1"  # a name that is unique keeps its stem


# ----------------------------------------------------------------------------------------------
# 10: unwritable outputs are one message naming the path


def test_unwritable_outputs_name_the_path(tiny_ckpt, shapes, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    image = str(sorted((shapes / "val" / "images").iterdir())[0])
    ev = ["eval", "--checkpoint", str(tiny_ckpt), "--data", str(shapes / "val"), "--no-progress"]
    cases = [
        ev + ["--out", str(blocker)],
        ev + ["--out", str(blocker / "sub")],
        ev + ["--out", str(tmp_path / "ok"), "--json", str(blocker / "m.json")],
        ["predict", "--checkpoint", str(tiny_ckpt), image, "--out", str(blocker / "p"), "--no-progress"],
        ["predict", "--checkpoint", str(tiny_ckpt), image, "--out", str(blocker), "--no-progress"],
        ["info", "--preset", "shapes-tiny", "--json", str(blocker / "info.json")],
        ["info", "--preset", "shapes-tiny", "--json", str(tmp_path)],
    ]
    for args in cases:
        capsys.readouterr()
        assert cli(args) == 2, args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert str(blocker) in err or str(tmp_path) in err, err


# ----------------------------------------------------------------------------------------------
# 5: one image reader for the command line, the data sets and the demo


def test_one_reader_scales_32_bit_tiff_with_16_bit_values(tmp_path):
    import numpy as np
    from PIL import Image

    from app.images import load_image
    from cfnet.data import read_image
    from cfnet.engine.predict import load_image as cli_image

    values = (np.arange(20 * 30).reshape(20, 30) * 100).astype(np.int32)  # 0 .. 59900, 16-bit range
    tif = tmp_path / "deep.tif"
    Image.fromarray(values, mode="I").save(tif)
    assert Image.open(tif).mode == "I"
    expected = np.round(values / 257.0).astype(np.uint8)
    for read in (read_image, cli_image, lambda p: load_image(p).array):
        rgb = read(tif)
        assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
        np.testing.assert_array_equal(rgb[..., 0], expected)
    # Other modes: the three readers agree everywhere (alpha over white, palettes, 16-bit PNGs).
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 1] = 120
    rgba[:10, :, 3] = 255
    cases = {
        "rgba.png": Image.fromarray(rgba),
        "i16.png": Image.fromarray((np.arange(600).reshape(20, 30) * 97).astype(np.uint16)),
        "pal.png": Image.fromarray(rgba[..., :3]).convert("P"),
        "gray.png": Image.fromarray(np.full((20, 30), 77, np.uint8)),
    }
    for name, im in cases.items():
        im.save(tmp_path / name)
        a = read_image(tmp_path / name)
        np.testing.assert_array_equal(a, cli_image(tmp_path / name), err_msg=name)
        np.testing.assert_array_equal(a, load_image(tmp_path / name).array, err_msg=name)


# ----------------------------------------------------------------------------------------------
# 11: predict on huge images: a pixel limit, --max-side like the demo


def _png_header_only(path, width, height):
    """A PNG whose header claims width × height (tiny file; decoding would fail or explode)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
    data += struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    idat = zlib.compress(b"\x00" * 64)
    data += struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    data += struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    path.write_bytes(data)
    return path


def test_predict_refuses_images_over_the_pixel_limit(tiny_ckpt, tmp_path, capsys):
    from cfnet.data import read_image

    huge = _png_header_only(tmp_path / "huge.png", 15000, 12000)
    assert cli(["predict", "--checkpoint", str(tiny_ckpt), str(huge), "--out", str(tmp_path / "p"),
                "--no-progress"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert str(huge) in err and "15000×12000" in err and "megapixels" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="megapixels"):  # the data sets' reader: the same refusal
        read_image(huge)


def test_predict_downscales_to_max_side_and_says_so(tiny_ckpt, tmp_path, capsys):
    import argparse

    import numpy as np
    from PIL import Image

    from app.images import DEFAULT_MAX_SIDE
    from cfnet.engine import predict

    parser = argparse.ArgumentParser()
    predict.add_arguments(parser)
    assert parser.parse_args(["x.png", "--out", "o"]).max_side == DEFAULT_MAX_SIDE
    rng = np.random.default_rng(0)
    big = tmp_path / "big.jpg"
    Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(big)
    small = tmp_path / "small.png"
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(small)
    out = tmp_path / "pred"
    assert cli(["predict", "--checkpoint", str(tiny_ckpt), str(big), str(small), "--out", str(out),
                "--max-side", "100", "--no-progress"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert str(big) in err and "300×200" in err and "100×67" in err and str(small) not in err
    data = json.loads((out / "predictions.json").read_text())
    big_rec, small_rec = data["images"]
    assert (big_rec["width"], big_rec["height"]) == (100, 67)
    assert (big_rec["original_width"], big_rec["original_height"]) == (300, 200)
    assert (small_rec["width"], small_rec["height"]) == (60, 40) and "original_width" not in small_rec
    assert Image.open(out / "panoptic" / "big.png").size == (100, 67)
    assert Image.open(out / "overlay" / "big.png").size == (100, 67)
    args = ["predict", "--checkpoint", str(tiny_ckpt), str(big), "--out", str(out), "--max-side", "0"]
    assert cli(args) == 2 and "--max-side" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# 12: the whole split is checked up front (cheaply), unless --no-check-data


def test_train_checks_the_split_before_the_first_iteration(shapes, tmp_path, capsys, monkeypatch):
    from cfnet.data import PanopticDataset

    loaded = []
    load = PanopticDataset.load_panoptic
    monkeypatch.setattr(PanopticDataset, "load_panoptic", lambda self, i: loaded.append(i) or load(self, i))
    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    split = json.loads((data / "train" / "panoptic.json").read_text())
    missing = data / "train" / "panoptic" / split["annotations"][-1]["file_name"]
    missing.unlink()
    run = tmp_path / "run"
    assert cli(_train_args(data, run, "--no-eval", "--max-iters", "1")) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err
    assert not (run / "last.pt").exists() and loaded == []  # found before any item was loaded


def test_eval_checks_the_split_before_any_prediction(tiny_ckpt, shapes, tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "val"
    shutil.copytree(shapes / "val", root)
    split = json.loads((root / "panoptic.json").read_text())
    last = root / "images" / split["images"][-1]["file_name"]
    Image.open(last).crop((0, 0, 64, 48)).save(last)  # the JSON says 64×64
    args = ["eval", "--checkpoint", str(tiny_ckpt), "--data", str(root), "--no-progress"]
    assert cli(args + ["--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert str(last) in err and "64x48" in err
    assert not list((tmp_path / "a").rglob("*.png"))  # refused before the model ran
    # Skipping the check: the same error comes when the bad item is reached.
    assert cli(args + ["--out", str(tmp_path / "b"), "--no-check-data"]) == 2
    assert list((tmp_path / "b").rglob("*.png"))


# ----------------------------------------------------------------------------------------------
# 14: the demo logs one line for a user error, a traceback only for a bug; refuses a dead start


def test_demo_logs_one_line_for_user_errors_and_a_traceback_for_bugs(caplog):
    import logging

    import gradio as gr

    from app import main as app_main
    from app.errors import DemoError

    @app_main._user_errors
    def user_mistake():
        raise DemoError("pixel (500, 3) is outside the image")

    @app_main._user_errors
    def bug():
        raise ZeroDivisionError("a bug")

    caplog.set_level(logging.INFO)
    with pytest.raises(gr.Error) as info:
        user_mistake()
    assert info.value.print_exception is False  # gradio must not print a traceback either
    records = [r for r in caplog.records if "outside the image" in r.getMessage()]
    assert len(records) == 1 and records[0].exc_info is None
    caplog.clear()
    with pytest.raises(gr.Error) as info:
        bug()
    assert info.value.print_exception is False  # logged once, by us, with the traceback
    assert [r.exc_info is not None for r in caplog.records] == [True]


def test_demo_refuses_to_start_when_no_checkpoint_loads(tmp_path, monkeypatch, capsys):
    import argparse

    import gradio as gr

    from app import main as app_main

    launched = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, *a, **k: launched.append(1))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 100)
    parser = argparse.ArgumentParser()
    app_main.add_arguments(parser)
    assert app_main.main(parser.parse_args(["--checkpoint", str(corrupt)])) == 2
    out = capsys.readouterr()
    assert "corrupt.pt" in out.err + out.out and not launched
