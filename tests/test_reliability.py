"""Faults found by a user probe: each test reproduces one (it failed before the fix).

Every user mistake must end in one clear line naming the file / field / argument and exit code 2,
never a traceback. Runs a shrunken ``shapes-tiny`` on a few 64-px ``shapes`` images.
"""

from __future__ import annotations

import pytest
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
