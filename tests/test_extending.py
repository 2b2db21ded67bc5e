"""docs/extending.md: every recipe runs as written (its code blocks are executed here) and works.

Each test executes the page's code for one part, then uses the new name through the public API
only: a config override, training, a checkpoint, cfnet.inspection.inspect_point, the data readers,
cfnet.ablation. The registries are restored after each test.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cfnet import ablation
from cfnet.backbone import BACKBONES
from cfnet.checkpoint import load_checkpoint
from cfnet.config import ConfigError, choices, get_config, validate
from cfnet.correlation import CORRELATION_FUNCTIONS, build_correlation_function
from cfnet.data import LAYOUTS, PanopticDataset, collate, generate_shapes, resolve_splits
from cfnet.data.panoptic import split_names
from cfnet.engine.train import train
from cfnet.inspection import inspect_point
from cfnet.model import build_model
from cfnet.modules import POSITION_MODULES, SEMANTIC_MODULES
from tests.tiny import TINY_TRAINING

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PAGE = Path(__file__).resolve().parent.parent / "docs" / "extending.md"
TINY = [
    *TINY_TRAINING,
    "data.min_size_train=[64]",
    "solver.max_iters=2",
    "solver.warmup_iters=1",
    "solver.steps=[]",
]


def recipes() -> dict[str, str]:
    """{section title: its python code} of docs/extending.md."""
    out, title = {}, None
    for block in re.split(r"(?m)^## ", PAGE.read_text())[1:]:
        title = block.splitlines()[0].strip()
        code = re.findall(r"```python\n(.*?)```", block, flags=re.S)
        if code:
            out[title] = "\n".join(code)
    return out


def run_recipe(title: str) -> dict:
    namespace: dict = {}
    exec(compile(recipes()[title], f"docs/extending.md: {title}", "exec"), namespace)
    return namespace


@pytest.fixture(autouse=True)
def restore_registries():
    registries = [CORRELATION_FUNCTIONS, SEMANTIC_MODULES, POSITION_MODULES, BACKBONES, LAYOUTS]
    registries += [ablation.RUNS, ablation.TABLES]
    saved = [dict(r) for r in registries]
    yield
    for registry, before in zip(registries, saved):
        registry.clear()
        registry.update(before)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    generate_shapes(root, num_train=4, num_val=2, size=64, seed=3, progress=False)
    return root


def test_the_page_has_one_recipe_per_part():
    assert list(recipes()) == [
        "A correlation function",
        "A position module (or a semantic module)",
        "A backbone",
        "A dataset layout",
        "An ablation row",
    ]


def test_correlation_function_recipe(shapes, tmp_path):
    with pytest.raises(ConfigError, match="model.correlation.function"):
        validate(get_config("shapes-tiny", ["model.correlation.function=cosine"]))
    ns = run_recipe("A correlation function")
    assert "cosine" in choices("model.correlation.function")
    g = build_correlation_function("cosine", 3)
    assert isinstance(g, ns["CosineCorrelation"]) and g.num_params == 4
    theta, coords = torch.randn(2, 4, dtype=torch.float64), torch.tensor([0.0, 1.5, 4.0], dtype=torch.float64)
    expected = [[sum(t[n] * math.cos(n * math.pi * j / 5) for n in range(4)) for j in coords] for t in theta]
    torch.testing.assert_close(g(theta, coords, 5), torch.tensor(expected, dtype=torch.float64))

    # build shapes-tiny with it, train two iterations, inspect one pixel of the trained model
    cfg = get_config("shapes-tiny", [*TINY, "model.correlation.function=cosine"])
    result = train(cfg, shapes, tmp_path / "run", progress=False, evaluate_val=False)
    assert result["iteration"] == 2
    model, _, _ = load_checkpoint(result["final_checkpoint"])
    scm, icm = model.semantic_head.module, model.instance_head.position
    assert scm.function.name == icm.function.name == "cosine"
    assert scm.theta.hor.out_channels == 6  # N + 1 with N = 5
    image = torch.rand(3, 64, 64)
    data = inspect_point(model, image, (20, 40), "p3")
    assert data.scm is not None and data.icm is not None
    assert all(np.isfinite(v).all() for v in data.scm.arrays().values())


def test_position_module_recipe(shapes):
    ns = run_recipe("A position module (or a semantic module)")
    assert "learned-bias" in choices("model.instance.position")
    model = build_model(get_config("shapes-tiny", [*TINY, "model.instance.position=learned-bias"]))
    assert isinstance(model.instance_head.position, ns["LearnedBias"])
    images, targets = collate([PanopticDataset(shapes / "train")[i] for i in range(2)])
    losses = model.train()(images, targets)
    sum(losses.values()).backward()
    assert model.instance_head.position.bias.grad is not None


def test_backbone_recipe():
    run_recipe("A backbone")
    assert "resnet18-tv" in choices("model.backbone.name")
    overrides = [*TINY, "model.backbone.name=resnet18-tv", "model.backbone.fpn_channels=16"]
    cfg = get_config("shapes-tiny", overrides)
    model = build_model(cfg).eval()
    assert model.backbone.out_channels == model.instance_head.in_channels == 16
    out = model([torch.rand(3, 64, 64)])[0]
    assert out["panoptic_seg"].shape == (64, 64)


def test_dataset_layout_recipe(shapes, tmp_path):
    assert split_names("train") == ("train", "train2017", "training")  # the shipped layouts, in order
    root = tmp_path / "lab"
    for split, name in (("train", "fit"), ("val", "holdout")):
        (root / "labels").mkdir(parents=True, exist_ok=True)
        shutil.copy(shapes / split / "panoptic.json", root / "labels" / f"{name}.json")
        shutil.copytree(shapes / split / "panoptic", root / "labels" / name)
        shutil.copytree(shapes / split / "images", root / "pictures" / name)
    with pytest.raises(FileNotFoundError):
        PanopticDataset(root, split="fit")
    run_recipe("A dataset layout")
    assert resolve_splits(root) == (root / "labels" / "fit.json", root / "labels" / "holdout.json")
    fit = PanopticDataset(root, split="fit")
    assert len(fit) == 4 and fit.image_dir == root / "pictures" / "fit"
    image, target = fit[0]
    reference_image, reference_target = PanopticDataset(shapes / "train")[0]
    assert torch.equal(image, reference_image) and torch.equal(target["sem_seg"], reference_target["sem_seg"])


def test_ablation_row_recipe(shapes, tmp_path):
    run_recipe("A correlation function")
    run_recipe("An ablation row")
    assert ablation.table_runs("fn-cosine") == ["scm-icm", "cosine"]
    validate(get_config(ablation.DEFAULT_PRESET, ablation.RUNS["cosine"]))
    extra = [o for o in TINY if not o.startswith("solver.max_iters")]
    metrics = ablation.run_ablation(
        "cosine", ablation.RUNS["cosine"], shapes, tmp_path / "runs", iters=2,
        extra_overrides=extra, latency_images=1,
    )  # fmt: skip
    assert {"PQ", "mIoU", "mask_AP"} <= set(metrics)
    found = ablation.find_result(
        "cosine", ablation.RUNS["cosine"], shapes, 2, 0, results_dir=tmp_path / "runs", extra_overrides=extra
    )
    assert found is not None and found["metrics"] == metrics
