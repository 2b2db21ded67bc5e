"""cfnet.diagnostics: the pure cores on hand-made inputs with known answers, then ``analyze`` and
``cfnet analyze`` end to end on the shipped checkpoint and a few generated ``shapes`` images."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from tiny import TINY_MODEL

from cfnet.checkpoint import load_checkpoint
from cfnet.cli import main as cli
from cfnet.config import get_config
from cfnet.data import generate_shapes
from cfnet.diagnostics import (
    RESULT_KEYS,
    _icm_representations,
    analyze,
    cell_sample_indices,
    feature_scale,
    fit_loss,
    nearest_centroid_loo_accuracy,
    nearest_centroid_loo_scores,
    same_class_mass,
    scm_axial_weights,
    weight_entropy,
)
from cfnet.inspection import Geometry
from cfnet.model import build_model
from cfnet.modules.icm import InstanceCorrelationModule
from cfnet.modules.scm import SemanticCorrelationModule

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A 2×3 map: row 0 = [0, 0, 1], row 1 = [1, 1, 1].
LABELS = torch.tensor([[0, 0, 1], [1, 1, 1]])


def _same_class_weights(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row/column weights spread evenly over u's same-class pixels only."""
    row = (labels[:, :, None] == labels[:, None, :]).double()  # (H, W, W)
    col = (labels[:, :, None] == labels.T[None, :, :]).double()  # (H, W, H)
    return row / row.sum(-1, keepdim=True), col / col.sum(-1, keepdim=True)


# ---------------------------------------------------------------------------------------------- SCM


def test_same_class_mass_is_one_when_all_weight_is_on_own_class():
    row_w, col_w = _same_class_weights(LABELS)
    mass = same_class_mass(row_w, col_w, LABELS)
    assert torch.allclose(mass, torch.ones(2, 3, dtype=torch.float64))


def test_same_class_mass_of_uniform_weights_is_the_share_counted_by_hand():
    h, w = LABELS.shape
    mass = same_class_mass(torch.full((h, w, w), 1 / w), torch.full((h, w, h), 1 / h), LABELS)
    # ½·(share of u's class in its row + in its column), counted on the picture:
    expected = torch.tensor(
        [
            [(2 / 3 + 1 / 2) / 2, (2 / 3 + 1 / 2) / 2, (1 / 3 + 1) / 2],
            [(1 + 1 / 2) / 2, (1 + 1 / 2) / 2, (1 + 1) / 2],
        ],
        dtype=torch.float64,
    )
    assert torch.allclose(mass, expected)


def test_same_class_mass_drops_ignored_pixels_and_renormalises():
    labels = torch.tensor([[0, 255, 0], [1, 1, 1]])
    h, w = labels.shape
    row_w = torch.full((h, w, w), 1 / w, dtype=torch.float64)
    # Pixel (0, 0): half of its row weight on the ignored (0, 1), half on its own class at (0, 2).
    row_w[0, 0] = torch.tensor([0.0, 0.5, 0.5])
    col_w = torch.full((h, w, h), 1 / h, dtype=torch.float64)
    mass = same_class_mass(row_w, col_w, labels)
    assert math.isnan(mass[0, 1])  # ignored u
    # (0, 0): row renormalised over {(0,0), (0,2)} -> all on class 0 = 1; column [0, 1] -> 1/2.
    assert mass[0, 0] == pytest.approx((1 + 1 / 2) / 2)
    # (0, 2): row over the valid {(0,0), (0,2)}, both class 0 -> 1; column [0, 1] -> 1/2.
    assert mass[0, 2] == pytest.approx((1 + 1 / 2) / 2)
    # (1, 1): row all class 1 -> 1; column {(0,1) ignored, (1,1) itself} -> 1.
    assert mass[1, 1] == pytest.approx(1.0)


def test_weight_entropy_uniform_is_log_w_and_one_hot_is_zero():
    w = torch.full((4, 5, 7), 1 / 7)
    assert torch.allclose(weight_entropy(w), torch.full((4, 5), math.log(7), dtype=torch.float64))
    one_hot = torch.zeros(3, 7)
    one_hot[:, 2] = 1
    assert torch.equal(weight_entropy(one_hot), torch.zeros(3, dtype=torch.float64))


def test_scm_axial_weights_match_the_modules_own_weights():
    torch.manual_seed(0)
    scm = SemanticCorrelationModule(8, num_levels=3, hidden_channels=8).double()
    with torch.no_grad():  # strong amplitudes, so that the weights are far from uniform
        scm.theta.hor.bias[1:4] *= 30
        scm.theta.ver.bias[1:4] *= 30
    x = torch.randn(1, 8, 5, 7, dtype=torch.float64)
    row_w, col_w = scm_axial_weights(scm, x)
    assert row_w.shape == (5, 7, 7) and col_w.shape == (5, 7, 5)
    for point in ((0, 0), (2, 5), (4, 6)):
        row, col = scm.axial_weights(x, point)
        assert torch.allclose(row_w[point], row[0]) and torch.allclose(col_w[point], col[0])


# ---------------------------------------------------------------------------------------------- ICM


def test_separable_clusters_score_one():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20, 8, generator=g) * 0.1
    b = torch.randn(15, 8, generator=g) * 0.1 + 3.0
    assert nearest_centroid_loo_accuracy(a, b) == 1.0


def test_identical_features_are_all_ties_and_score_exactly_half():
    # Every cell is equally far (0) from both centroids: each comparison is a tie, counted as ½.
    a = torch.ones(4, 3)
    b = torch.ones(6, 3)
    assert torch.equal(nearest_centroid_loo_scores(a, b), torch.full((10,), 0.5, dtype=torch.float64))


def test_one_distribution_for_both_instances_scores_at_or_below_chance():
    # Leaving a cell out pulls its own centroid away from it: for n cells per instance in D
    # dimensions, E|a - own LOO centroid|² = D(1 + 1/(n-1)) > E|a - other centroid|² = D(1 + 1/n),
    # so LOO is biased below 0.5, and clearly so for few cells in many dimensions.
    g = torch.Generator().manual_seed(1)
    accs = [nearest_centroid_loo_accuracy(torch.randn(3, 64, generator=g), torch.randn(3, 64, generator=g))
            for _ in range(50)]  # fmt: skip
    assert np.mean(accs) < 0.4


def test_loo_toy_count_by_hand():
    # 1-D: A = {0, 2}, B = {1, 10}.
    # a=0: own LOO centroid 2 (d 2), B's centroid 5.5 (d 5.5) -> correct
    # a=2: own 0 (d 2), B 5.5 (d 3.5) -> correct
    # b=1: own LOO 10 (d 9), A's centroid 1 (d 0) -> wrong
    # b=10: own LOO 1 (d 9), A 1 (d 9) -> tie, ½
    scores = nearest_centroid_loo_scores(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 10.0]))
    assert scores.tolist() == [1.0, 1.0, 0.0, 0.5]
    assert nearest_centroid_loo_accuracy(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 10.0])) == 0.625


def test_loo_needs_two_cells_per_instance():
    with pytest.raises(ValueError, match="n >= 2"):
        nearest_centroid_loo_scores(torch.zeros(1, 3), torch.zeros(4, 3))


def test_icm_output_is_the_modules_forward():
    # f^I assembled from feature_proj + correlation_proj is what the ICM returns (Eq. 11).
    torch.manual_seed(0)
    icm = InstanceCorrelationModule(8, num_levels=3, num_refs=4, hidden_channels=8).double()
    x = torch.randn(1, 8, 6, 7, dtype=torch.float64)
    reps, terms = _icm_representations(icm, x)
    assert torch.allclose(reps["icm_output"], icm(x)[0])
    assert torch.allclose(terms["feature"] + terms["correlation"], icm(x)[0])
    assert reps["icm"].shape == (16, 6, 7) and reps["coords"].shape == (2, 6, 7)
    assert reps["sine"].shape == (8, 6, 7)


def test_cell_sample_indices_nearest_neighbour_and_padding():
    rows, cols = cell_sample_indices(Geometry((128, 128), (128, 128), (128, 128)), (16, 16))
    assert rows.tolist() == list(range(4, 128, 8)) and cols.tolist() == rows.tolist()
    # 100 px wide image padded to 128: cells whose centre is in the padding get -1.
    rows, cols = cell_sample_indices(Geometry((64, 100), (64, 100), (64, 128)), (8, 16))
    assert rows.tolist() == list(range(4, 64, 8))
    assert cols.tolist() == list(range(4, 100, 8)) + [-1] * 4  # centres 100, 108, 116, 124
    # The model's resize: a 256 px image analysed at 128 px samples every other input pixel's row.
    rows, _ = cell_sample_indices(Geometry((256, 256), (128, 128), (128, 128)), (16, 16))
    assert rows.tolist() == list(range(8, 256, 16))


# ---------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("diag")
    return generate_shapes(root, num_train=0, num_val=6, size=128, seed=0, progress=False)["val"]


@pytest.fixture(scope="module")
def shipped():
    model, _, _ = load_checkpoint("default")
    return model


def test_analyze_shipped_model(split, shipped):
    shipped.train()
    result = analyze(shipped, split, max_images=6, progress=False)
    assert shipped.training  # mode restored
    assert tuple(result) == RESULT_KEYS
    assert result["icm_pairs"] >= 1
    for key in ("scm_same_class_mass", "scm_uniform_mass"):
        assert 0.0 < result[key] <= 1.0, key
    assert result["scm_log_w"] == pytest.approx(math.log(32))  # P2 of a 128 px image
    assert 0.0 < result["scm_entropy"] <= max(result["scm_log_w"], result["scm_log_h"])
    for key in ("icm_separability", "icm_output_separability", "input_separability",
                "coords_separability", "sine_separability"):  # fmt: skip
        assert 0.0 <= result[key] <= 1.0, key
    # Positions of two disjoint regions differ, so coordinates separate them well.
    assert result["coords_separability"] > 0.8
    assert result["icm_term_ratio"] > 0.0
    json.dumps(result)  # plain values only


def test_analyze_without_scm_or_icm_still_gives_references(split):
    torch.manual_seed(0)
    cfg = get_config(
        "shapes-tiny", [*TINY_MODEL, "model.semantic.module=none", "model.instance.position=coords"]
    )
    model = build_model(cfg).eval()  # resizes the 128 px images to 64 px: exercises the geometry
    result = analyze(model, split, max_images=3, progress=False)
    assert tuple(result) == RESULT_KEYS
    for key in RESULT_KEYS:
        if key.startswith("scm_") or key in ("icm_separability", "icm_output_separability", "icm_term_ratio"):
            assert result[key] is None, key
    assert result["icm_pairs"] >= 1
    assert 0.0 <= result["coords_separability"] <= 1.0
    assert 0.0 <= result["input_separability"] <= 1.0


@pytest.mark.parametrize("function, position", [("gaussian", "icm"), ("dft", "icm-coords")])
def test_analyze_other_functions_and_icm_variants(split, function, position):
    torch.manual_seed(0)
    cfg = get_config(
        "shapes-tiny",
        [*TINY_MODEL, f"model.correlation.function={function}", f"model.instance.position={position}"],
    )
    model = build_model(cfg).eval()
    result = analyze(model, split, max_images=3, progress=False)
    assert result["icm_pairs"] >= 1
    assert all(result[k] is not None for k in RESULT_KEYS), result
    assert 0.0 <= result["scm_same_class_mass"] <= 1.0 and 0.0 <= result["icm_separability"] <= 1.0


def test_analyze_rejects_bad_max_images(split, shipped):
    with pytest.raises(ValueError, match="max_images"):
        analyze(shipped, split, max_images=0, progress=False)


def test_analyze_cli_writes_json(split, tmp_path, capsys):
    out = tmp_path / "out" / "diag.json"
    args = ["analyze", "--checkpoint", "default", "--data", str(split), "--json", str(out),
            "--max-images", "4", "--device", "cpu", "--no-progress"]  # fmt: skip
    assert cli(args) == 0
    assert "weight on own-class pixels" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert tuple(result) == RESULT_KEYS


@pytest.mark.parametrize("which", ["checkpoint", "data"])
def test_analyze_cli_bad_input_is_one_line_and_exit_2(split, tmp_path, capsys, which):
    missing = tmp_path / "nope"
    ckpt = str(missing / "model.pt") if which == "checkpoint" else "default"
    data = str(missing) if which == "data" else str(split)
    assert cli(["analyze", "--checkpoint", ckpt, "--data", data, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cfnet analyze: ") and "nope" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_fit_loss_is_the_models_training_loss_with_bn_statistics_frozen(tmp_path):
    torch.manual_seed(0)
    train_split = generate_shapes(tmp_path, num_train=5, num_val=0, size=64, seed=1, progress=False)["train"]
    model = build_model(get_config("shapes-tiny", list(TINY_MODEL))).eval()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean.add_(0.25)  # statistics that differ from any batch's: the loss must use these
    before = {k: v.clone() for k, v in model.state_dict().items()}
    value = fit_loss(model, train_split, max_images=5, batch_size=3)
    assert not model.training  # mode restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing updated
    # By hand: batches [0,1,2] and [3,4], BN in eval mode, image-weighted mean of the summed terms.
    from cfnet.data import PanopticDataset

    data = PanopticDataset(train_split, categories=model.categories)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        parts = []
        for idx in ([0, 1, 2], [3, 4]):
            losses = model([data[i][0] for i in idx], [data[i][1] for i in idx])
            parts.append(float(sum(losses.values())) * len(idx))
    assert value == pytest.approx(sum(parts) / 5, rel=1e-6)
    assert math.isfinite(value) and value > 0
    for bad in ({"max_images": 0}, {"batch_size": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            fit_loss(model, train_split, **bad)


def test_feature_scale_reads_resnet_stages_and_fpn_levels(tmp_path):
    torch.manual_seed(0)
    train_split = generate_shapes(tmp_path, num_train=3, num_val=0, size=64, seed=1, progress=False)["train"]
    model = build_model(get_config("shapes-tiny", list(TINY_MODEL))).train()
    scale = feature_scale(model, train_split, max_images=2)
    assert model.training  # mode restored
    stages = ["body.layer1", "body.layer2", "body.layer3", "body.layer4"]
    assert list(scale) == [*stages, "p2", "p3", "p4", "p5", "p6"]
    assert all(0 < v < math.inf for v in scale.values())
    with torch.no_grad():  # the FPN has no normalisation: scaling its output convs scales P2..P6
        for block in model.backbone.fpn.layer_blocks:
            block[0].weight.mul_(50)
            block[0].bias.mul_(50)
    louder = feature_scale(model, train_split, max_images=2)
    assert louder["body.layer4"] == pytest.approx(scale["body.layer4"])
    assert louder["p2"] == pytest.approx(50 * scale["p2"], rel=1e-4)
    with pytest.raises(ValueError, match="max_images"):
        feature_scale(model, train_split, max_images=0)
