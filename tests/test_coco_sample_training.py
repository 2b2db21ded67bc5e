"""One real training step on the 3 real COCO val2017 images with the paper's 133 categories.

The paper preset's heads, categories, losses and data path run unchanged; only the backbone and
widths are shrunk ("tiny backbone allowed") so the step fits the 2-core CI machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import cfnet
from cfnet.categories import Categories
from cfnet.checkpoint import load_checkpoint
from cfnet.engine.train import train

SAMPLE = Path(__file__).parent / "data" / "coco-panoptic-val2017-sample"


def test_one_training_step_on_the_real_coco_sample(tmp_path):
    cfg = cfnet.get_config(
        "paper-r50",
        [
            "model.backbone.depth=18",
            "model.backbone.fpn_channels=64",
            "model.instance.channels=64",
            "model.instance.num_convs=1",
            "model.instance.mask_feature_channels=32",
            "model.semantic.channels=32",
            "model.correlation.hidden_channels=16",
            "data.min_size_train=[192]",
            "data.max_size_train=288",
            "data.num_workers=0",
            "solver.batch_size=3",
            "solver.max_iters=1",
            "solver.warmup_iters=0",
            "solver.checkpoint_period=1",
        ],
    )
    cats = Categories.from_spec(cfg.model.categories)
    assert (cats.num_things, cats.num_stuff) == (80, 53)
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in cfnet.build_model(cfg).state_dict().items()}

    result = train(cfg, SAMPLE, tmp_path / "run", progress=False)

    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["iteration"] == 1
    for key in ("loss_mask", "loss_cate", "loss_sem"):
        assert torch.isfinite(torch.tensor(record[key])) and record[key] > 0, key
    model, _, meta = load_checkpoint(result["final_checkpoint"])
    assert meta["iteration"] == 1 and len(model.categories) == 133
    after = model.state_dict()
    # `before` is the run's own initial state: the frozen stem (frozen_stages=1) is bit-identical
    stem = [k for k in after if k.startswith("backbone.body.conv1.")]
    assert stem and all(torch.equal(after[k], before[k]) for k in stem)
    # the step moved the weights of every branch, the correlation modules included
    for prefix in ("backbone.", "instance_head.", "semantic_head."):
        changed = [k for k in after if k.startswith(prefix) and after[k].is_floating_point()
                   and not torch.equal(after[k], before[k])]
        assert changed, prefix
    assert any("theta" in k and not torch.equal(after[k], before[k]) for k in after), "SCM/ICM θ predictors"


def test_train_finds_the_splits_of_a_coco_layout_root(tmp_path):
    """`cfnet train --data /datasets/coco` must pick train2017 for training and val2017 for eval."""
    import shutil

    from cfnet.data import PanopticDataset, resolve_splits

    for split in ("train2017", "val2017"):
        shutil.copytree(SAMPLE / "images", tmp_path / split)
        shutil.copytree(SAMPLE / "panoptic", tmp_path / "annotations" / f"panoptic_{split}")
        shutil.copy(SAMPLE / "panoptic.json", tmp_path / "annotations" / f"panoptic_{split}.json")
    train_split, val_split = resolve_splits(tmp_path)
    assert train_split == tmp_path / "annotations" / "panoptic_train2017.json"
    assert val_split == tmp_path / "annotations" / "panoptic_val2017.json"
    assert len(PanopticDataset(train_split)) == 3 and len(PanopticDataset(val_split)) == 3
    # a project-layout folder and a single split still resolve as before
    assert resolve_splits(SAMPLE) == (SAMPLE, None)
