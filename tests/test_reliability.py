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
from tiny import TINY_MODEL

from cfnet.cli import main as cli
from cfnet.config import ConfigError, get_config

TRAIN = [
    *TINY_MODEL,
    "data.max_size_train=64",
    "data.min_size_train=[64]",
    "data.num_workers=0",
    "solver.batch_size=2",
    "solver.log_period=1",
    "solver.checkpoint_period=100",
]

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
