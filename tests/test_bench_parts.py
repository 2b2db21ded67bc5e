"""`cfnet bench parts`: the SCM/ICM split, its exact alternatives and the floor."""

from __future__ import annotations

import json

import pytest
import torch

from cfnet.bench.parts import _axial_sdpa, _folded_projection, capture_inputs, icm_parts, scm_parts
from cfnet.cli import main as cli
from cfnet.config import get_config
from cfnet.model import build_model
from cfnet.modules.icm import InstanceCorrelationModule
from cfnet.modules.scm import SemanticCorrelationModule, _axial_aggregate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("function", ["dft", "dft-periodic"])
def test_axial_sdpa_equals_the_matmul_form(function):
    torch.manual_seed(0)
    scm = SemanticCorrelationModule(16, 3, hidden_channels=8, function=function)
    x = torch.randn(2, 16, 7, 11)
    with torch.no_grad():
        theta_hor, theta_ver = scm.params(x)
        theta_hor, theta_ver = 3 * theta_hor, 3 * theta_ver  # sharper weights than at init
        ref = _axial_aggregate(x, theta_hor, theta_ver, scm.function)
        out = _axial_sdpa(x, theta_hor, theta_ver, scm.function)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("function", ["dft", "dft-periodic"])
def test_folded_projection_equals_conv_over_c(function):
    torch.manual_seed(0)
    icm = InstanceCorrelationModule(16, 3, num_refs=(4, 5), hidden_channels=8, function=function)
    x = torch.randn(2, 16, 6, 9)
    with torch.no_grad():
        theta_hor, theta_ver = icm.params(x)
        ref = icm.correlation_proj(icm._features_from_theta(theta_hor, theta_ver))
        out = _folded_projection(icm, theta_hor, theta_ver)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_parts_run_on_the_captured_levels():
    torch.manual_seed(0)
    pin = ["model.input.min_size_test=64", "model.input.max_size_test=96"]
    model = build_model(get_config("shapes-tiny", pin)).eval()
    inputs = capture_inputs(model, torch.rand(3, 64, 96))
    assert [tuple(x.shape[-2:]) for x in inputs["scm"]] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    assert len(inputs["icm"]) == len(model.instance_head.num_grids)
    assert len(inputs["sem_conv"]) == 4
    parts, alts = scm_parts(model.semantic_head.module, inputs["scm"])
    icm, icm_alts = icm_parts(model.instance_head.position, inputs["icm"])
    for fn in [*parts.values(), *icm.values()]:
        fn()
    for alt in [*alts.values(), *icm_alts.values()]:
        alt["run"]()
        assert alt["replaces"] in {**parts, **icm}
        assert alt["max_rel_diff"] < 1e-5


def test_a_nonlinear_family_has_no_alternatives():
    model = build_model(get_config("shapes-tiny", ["model.correlation.function=gaussian"])).eval()
    inputs = capture_inputs(model, torch.rand(3, 64, 64))
    parts, alts = scm_parts(model.semantic_head.module, inputs["scm"])
    icm, icm_alts = icm_parts(model.instance_head.position, inputs["icm"])
    assert parts and icm and alts == {} and icm_alts == {}


def test_parts_refuse_a_model_without_the_modules():
    model = build_model(get_config("shapes-tiny", ["model.semantic.module=none"])).eval()
    with pytest.raises(ValueError, match="axial mode only"):
        scm_parts(model.semantic_head.module, [torch.rand(1, 64, 4, 4)])
    model = build_model(get_config("shapes-tiny", ["model.instance.position=coords"])).eval()
    with pytest.raises(ValueError, match="position=icm"):
        icm_parts(model.instance_head.position, [torch.rand(1, 64, 4, 4)])


def test_bench_parts_cli(tmp_path, capsys):
    out = tmp_path / "parts.json"
    argv = ["bench", "parts", "--preset", "shapes-tiny", "--size", "64x96", "--repeats", "1", "--warmup", "0",
            "--device", "cpu", "--no-progress", "--json", str(out)]
    assert cli(argv) == 0
    data = json.loads(out.read_text())
    assert set(data["models_ms"]) == {"ours", "baseline"}
    ours, base = data["models_ms"]["ours"]["total"], data["models_ms"]["baseline"]["total"]
    assert data["ratio"] == pytest.approx(ours / base)
    floor = ["SCM θ 3×3 conv + ReLU", "ICM θ 3×3 conv + ReLU", "last semantic tower conv + GN + ReLU"]
    assert data["floor_parts"] == floor
    assert data["floor_ms"] == pytest.approx(sum(data["parts_ms"][p] for p in data["floor_parts"]))
    assert data["floor_ratio"] == pytest.approx(1 + data["floor_ms"] / base)
    assert all(a["max_rel_diff"] < 1e-5 for a in data["alternatives"].values())
    assert "ours / baseline" in capsys.readouterr().out


def test_bench_parts_names_a_bad_argument(capsys):
    assert cli(["bench", "parts", "--preset", "shapes-tiny", "--repeats", "0"]) == 2
    assert "--repeats" in capsys.readouterr().err
    assert cli(["bench", "parts", "--preset", "shapes-tiny", "model.semantic.module=attention"]) == 2
    assert "axial mode only" in capsys.readouterr().err
