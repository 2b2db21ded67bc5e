"""`cfnet info` (parameter counts per component) and `cfnet bench model` (latency)."""

from __future__ import annotations

import json

import pytest
import torch

from cfnet.bench.model import parse_size, time_inference
from cfnet.cli import main as cli
from cfnet.config import get_config
from cfnet.info import COMPONENTS, count_parameters
from cfnet.model import build_model

BASELINE = ["model.semantic.module=none", "model.semantic.num_convs=3", "model.instance.position=coords"]


def test_info_json_structure(tmp_path, capsys):
    out = tmp_path / "info.json"
    assert (
        cli(["info", "--preset", "shapes-tiny", "model.semantic.module=attention", "--json", str(out)]) == 0
    )
    data = json.loads(out.read_text())
    assert set(data) == {"params", "config"}
    assert set(data["params"]) == {"total", "backbone", "fpn", "instance", "semantic", "scm", "icm"}
    assert sum(data["params"][k] for k in COMPONENTS) == data["params"]["total"]
    assert data["config"]["model"]["semantic"]["module"] == "attention"
    assert data["params"]["scm"] > 0  # the non-local block sits where the SCM would
    printed = capsys.readouterr().out
    assert "backbone" in printed and "total" in printed and "semantic:" in printed
    assert cli(["info", "--preset", "no-such-preset"]) == 2


def basic_resnet_parameters(blocks: list[int]) -> int:
    """Parameters of a basic-block ResNet body without fc: convs have no bias, BN has 2 per channel."""
    total = 7 * 7 * 3 * 64 + 2 * 64  # stem
    cin = 64
    for stage, n in enumerate(blocks):
        cout = 64 * 2**stage
        for b in range(n):
            total += 9 * cin * cout + 9 * cout * cout + 2 * (2 * cout)
            if b == 0 and cin != cout:
                total += cin * cout + 2 * cout  # 1x1 downsample + BN
            cin = cout
    return total


def test_parameter_counts_by_hand():
    """Components against the formulas of torchvision's ResNet-18 / FPN and of the heads."""
    cfg = get_config("shapes-tiny")
    model = build_model(cfg)
    counts = count_parameters(model)
    blocks = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[cfg.model.backbone.depth]
    assert counts["backbone"] == basic_resnet_parameters(blocks)
    c = cfg.model.backbone.fpn_channels
    assert counts["fpn"] == sum(ci * c + c for ci in (64, 128, 256, 512)) + 4 * (9 * c * c + c)
    sem = cfg.model.semantic
    h = sem.channels
    tower = 9 * c * h + 2 * h + (sem.num_convs - 1) * (9 * h * h + 2 * h)  # conv (no bias) + GN
    assert counts["semantic"] == tower + 4 * h * 6 + 6
    n, hid, s = (
        cfg.model.correlation.num_levels,
        cfg.model.correlation.hidden_channels,
        cfg.model.correlation.num_refs,
    )
    theta = 9 * c * hid + hid + 2 * (hid * (2 * n + 1) + 2 * n + 1)
    assert counts["scm"] == theta
    assert counts["icm"] == theta + (c * c + c) + (s * s * c + c)


def test_table8_variants_differ_by_the_modules_and_the_extra_convs():
    """Paper-r50 vs its Table 8 baseline and deeper head: the differences are exactly SCM + ICM,
    the CoordConv channels and the extra semantic convs."""
    counts = {}
    for name, overrides in [
        ("ours", []),
        ("baseline", BASELINE),
        ("deeper", BASELINE[:1] + ["model.semantic.num_convs=7"] + BASELINE[2:]),
    ]:
        counts[name] = count_parameters(build_model(get_config("paper-r50", overrides)))
    ours, base, deeper = counts["ours"], counts["baseline"], counts["deeper"]
    h = 128
    conv = 9 * h * h + 2 * h
    assert deeper["total"] - base["total"] == 4 * conv
    assert base["scm"] == base["icm"] == 0
    coord = 2 * 512 * 9  # CoordConv: two extra input channels of the first kernel-branch conv
    assert ours["total"] - base["total"] == ours["scm"] + ours["icm"] + conv - coord
    for key in ("backbone", "fpn"):
        assert ours[key] == base[key] == deeper[key]


def test_bench_model_runs_with_vs(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = [
        "bench",
        "model",
        "--preset",
        "shapes-tiny",
        "--size",
        "64x96",
        "--vs",
        "model.semantic.module=none",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--device",
        "cpu",
        "--json",
        str(out),
    ]
    assert cli(argv) == 0
    data = json.loads(out.read_text())
    assert data["size"] == [64, 96] and data["machine"]["device"] == "cpu"
    assert [m["name"] for m in data["models"]] == ["base", "variant"]
    base, variant = data["models"]
    assert variant["overrides"] == ["model.semantic.module=none"]
    assert base["params"] > variant["params"]
    assert len(base["samples_ms"]) == 2
    assert data["ratio"] == pytest.approx(variant["median_ms"] / base["median_ms"])
    assert set(base["components_ms"]) == {"preprocess", "backbone", "scm", "icm", "heads", "postprocess"}
    assert (
        variant["components_ms"]["scm"] < base["components_ms"]["scm"] or variant["components_ms"]["scm"] == 0
    )
    assert "ratio variant / base" in capsys.readouterr().out


def test_time_inference_stages_cover_the_forward():
    torch.manual_seed(0)
    cfg = get_config("shapes-tiny", ["model.input.min_size_test=64", "model.input.max_size_test=64"])
    model = build_model(cfg).eval()
    image = torch.rand(3, 64, 64)
    times = time_inference(model, image, torch.device("cpu"))
    assert times["scm"] > 0 and times["icm"] > 0 and times["heads"] > 0
    parts = sum(times[k] for k in ("preprocess", "backbone", "scm", "icm", "heads", "postprocess"))
    assert parts <= times["total"] * 1.001 + 1e-4
    # the hooks are removed again
    assert not model.semantic_head.module._forward_hooks and not model.instance_head.position._forward_hooks


def test_parse_size():
    assert parse_size("800x1333") == (800, 1333)
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("800")
