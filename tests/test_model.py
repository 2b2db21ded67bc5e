"""CFNet end to end: every preset runs, outputs follow the documented contract, ablations build,
gradients reach SCM/ICM, the instance head's pieces match SOLOv2, and the whole chain learns."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cfnet.config import Config, ConfigError, get_config, list_presets
from cfnet.heads.instance import (
    MaskFeatureBranch,
    SOLOv2InstanceHead,
    coord_features,
    dynamic_conv,
    point_nms,
)
from cfnet.losses import dice_loss, sigmoid_focal_loss
from cfnet.model import CFNet, build_model
from cfnet.modules import InstanceCorrelationModule, SemanticCorrelationModule
from cfnet.targets import assign_targets
from cfnet.transform import PanopticTransform, resized_size

PAPER_PRESETS = [p for p in list_presets() if p.startswith("paper")]


# ---------------------------------------------------------------------------------------------
# synthetic scenes drawn here (the project's `shapes` generator is tested elsewhere)


def draw_scene(seed: int, size: int = 96) -> tuple[torch.Tensor, dict]:
    """Coloured disc / square / triangle on two striped stuff regions; targets in contiguous ids.

    Contiguous ids of the `shapes` categories: things circle 0, square 1, triangle 2; stuff
    stripes-top 3, stripes-middle 4, stripes-bottom 5.
    """
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    split = size // 2 + int(torch.randint(-size // 8, size // 8 + 1, (1,), generator=g))
    top = yy < split
    image = torch.empty(3, size, size)
    image[:, top] = torch.tensor([0.2, 0.6, 0.3])[:, None] + 0.2 * ((yy[top] // 4) % 2)[None]
    image[:, ~top] = torch.tensor([0.5, 0.2, 0.6])[:, None] + 0.2 * ((xx[~top] // 4) % 2)[None]
    sem = torch.where(top, 3, 4).long()
    colours = {0: (0.9, 0.1, 0.2), 1: (0.1, 0.4, 0.9), 2: (1.0, 0.75, 0.0)}
    placed = torch.zeros(size, size, dtype=torch.bool)
    masks, labels = [], []
    for k in range(3):
        cls = (k + seed) % 3
        for _ in range(100):
            r = float(torch.randint(size // 10, size // 5, (1,), generator=g))
            cy = float(torch.randint(int(r), int(size - r), (1,), generator=g))
            cx = float(torch.randint(int(r), int(size - r), (1,), generator=g))
            if cls == 0:
                m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            elif cls == 1:
                m = ((yy - cy).abs() <= 0.85 * r) & ((xx - cx).abs() <= 0.85 * r)
            else:
                m = (yy <= cy + 0.8 * r) & (yy - (cy - r) >= 1.8 * (xx - cx).abs())
            if not (m & placed).any():
                break
        placed |= m
        masks.append(m)
        labels.append(cls)
        image[:, m] = torch.tensor(colours[cls])[:, None]
        sem[m] = cls
    return image.clamp(0, 1), {"masks": torch.stack(masks), "labels": torch.tensor(labels), "sem_seg": sem}


def simple_targets(images, num_things: int, num_classes: int) -> list[dict]:
    targets = []
    for i, im in enumerate(images):
        h, w = im.shape[-2:]
        masks = torch.zeros(2, h, w, dtype=torch.bool)
        masks[0, h // 8 : h // 2, w // 8 : w // 2] = True
        masks[1, h // 2 :, w // 2 :] = True
        sem = torch.full((h, w), num_classes - 1, dtype=torch.long)
        sem[masks[0]] = 0
        sem[masks[1]] = min(1, num_things - 1)
        sem[0, :] = 255
        labels = (
            torch.tensor([0, min(1, num_things - 1)])
            if i % 2 == 0
            else torch.tensor([min(1, num_things - 1), 0])
        )
        targets.append({"masks": masks, "labels": labels, "sem_seg": sem})
    return targets


def check_eval_output(model: CFNet, images, outputs) -> None:
    cats = model.categories
    assert len(outputs) == len(images)
    for image, out in zip(images, outputs):
        h, w = image.shape[-2:]
        assert set(out) == {"panoptic_seg", "segments_info", "sem_seg", "instances"}
        assert out["panoptic_seg"].shape == (h, w) and out["panoptic_seg"].dtype == torch.int64
        assert out["sem_seg"].shape == (cats.num_classes, h, w) and out["sem_seg"].is_floating_point()
        torch.testing.assert_close(out["sem_seg"].sum(0), torch.ones(h, w))
        inst = out["instances"]
        k = inst["scores"].shape[0]
        assert inst["masks"].shape == (k, h, w) and inst["masks"].dtype == torch.bool
        assert inst["labels"].shape == (k,) and inst["labels"].dtype == torch.int64
        assert k == 0 or int(inst["labels"].max()) < cats.num_things
        ids = set(out["panoptic_seg"].unique().tolist()) - {0}
        assert ids == {s["id"] for s in out["segments_info"]}
        for s in out["segments_info"]:
            assert set(s) == {"id", "category_id", "isthing", "score", "area"}
            assert s["category_id"] in cats
            assert s["isthing"] == cats.is_thing(cats.contiguous(s["category_id"]))
            assert s["area"] == int((out["panoptic_seg"] == s["id"]).sum())


# ---------------------------------------------------------------------------------------------
# every preset


def test_shapes_tiny_eval_outputs_at_each_inputs_resolution():
    torch.manual_seed(0)
    model = build_model(get_config("shapes-tiny")).eval()
    # different sizes in one batch; the transform resizes to min_size_test=128 internally
    images = [draw_scene(0, 96)[0], torch.rand(3, 100, 150), torch.rand(3, 128, 128)]
    outputs = model(images)
    check_eval_output(model, images, outputs)
    batch, sizes = model.preprocess(images)
    assert sizes == [(128, 128), (128, 192), (128, 128)]
    assert batch.shape == (3, 3, 128, 192)
    feats = model.features(batch)
    assert list(feats) == ["p2", "p3", "p4", "p5", "p6"]
    assert isinstance(model.semantic_head.module, SemanticCorrelationModule)
    assert isinstance(model.instance_head.position, InstanceCorrelationModule)


def test_shapes_tiny_training_losses_and_gradients_reach_scm_and_icm():
    torch.manual_seed(0)
    model = build_model(get_config("shapes-tiny")).train()
    data = [draw_scene(s, 96) for s in (0, 1)]
    images, targets = [d[0] for d in data], [d[1] for d in data]
    images[1] = F.interpolate(images[1][None], size=(80, 112), mode="bilinear")[0]  # other size
    targets[1] = {
        "masks": F.interpolate(targets[1]["masks"][None].float(), size=(80, 112))[0] > 0.5,
        "labels": targets[1]["labels"],
        "sem_seg": F.interpolate(targets[1]["sem_seg"][None, None].float(), size=(80, 112))[0, 0].long(),
    }
    losses = model(images, targets)
    assert set(losses) == {"loss_mask", "loss_cate", "loss_sem"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for name, module in (("SCM", model.semantic_head.module), ("ICM", model.instance_head.position)):
        for pname, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_paper_presets_run_eval_and_training_forward(preset):
    torch.manual_seed(0)
    cfg = get_config(preset, ["model.input.min_size_test=64", "model.input.max_size_test=96"])
    model = build_model(cfg)
    assert model.categories.num_classes == 133 and model.categories.num_things == 80
    image = torch.rand(3, 64, 90)
    with torch.no_grad():
        model.eval()
        check_eval_output(model, [image], model([image]))
        model.train()
        losses = model([image], simple_targets([image], 80, 133))
    assert set(losses) == {"loss_mask", "loss_cate", "loss_sem"}
    assert all(torch.isfinite(v) for v in losses.values())


# ---------------------------------------------------------------------------------------------
# ablations (Tables 4-8) are overrides


ABLATIONS = [
    ["model.semantic.module=none"],
    ["model.semantic.module=attention"],
    ["model.semantic.module=scm", "model.semantic.scm_mode=axial"],
    ["model.semantic.module=scm", "model.semantic.scm_mode=global"],
    ["model.instance.position=none"],
    ["model.instance.position=coords"],
    ["model.instance.position=sine"],
    ["model.instance.position=icm"],
    ["model.instance.position=icm-coords"],  # our extension
    ["model.correlation.function=dft-periodic"],
    ["model.correlation.function=gaussian"],
    ["model.correlation.num_levels=3"],
    ["model.correlation.num_levels=7"],
    ["model.correlation.num_refs=8"],
    ["model.correlation.num_refs=32"],
    ["model.semantic.num_convs=3"],
    ["model.semantic.num_convs=7"],
]


@pytest.mark.parametrize("overrides", ABLATIONS, ids=lambda o: " ".join(o))
def test_every_ablation_override_builds_and_runs(overrides):
    torch.manual_seed(0)
    cfg = get_config("shapes-tiny", overrides + ["model.input.min_size_test=64"])
    model = build_model(cfg)
    image, target = draw_scene(2, 64)
    model.train()
    losses = model([image], [target])
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    check_eval_output(model, [image], model([image]))


def test_ablation_modules_are_the_configured_ones():
    coords = build_model(get_config("shapes-tiny", ["model.instance.position=coords"]))
    head = coords.instance_head
    c = coords.cfg.model.backbone.fpn_channels
    # CoordConv: the kernel branch sees C + 2 channels, the category branch C (as SOLOv2)
    assert head.kernel_tower[0][0].in_channels == c + 2
    assert head.cate_tower[0][0].in_channels == c
    icm = build_model(get_config("shapes-tiny", ["model.correlation.num_refs=8"]))
    assert icm.instance_head.position.num_refs == (8, 8)
    assert icm.instance_head.kernel_tower[0][0].in_channels == c
    deeper = build_model(get_config("shapes-tiny", ["model.semantic.num_convs=7"]))
    assert len(deeper.semantic_head.tower) == 7


def test_bad_config_and_targets_fail_clearly():
    with pytest.raises(ConfigError, match="size_divisibility"):
        build_model(get_config("shapes-tiny", ["model.input.size_divisibility=16"]))
    model = build_model(get_config("shapes-tiny")).train()
    image, target = draw_scene(0, 64)
    with pytest.raises(ValueError, match="needs targets"):
        model([image])
    with pytest.raises(ValueError, match="labels must be contiguous thing ids"):
        model([image], [dict(target, labels=torch.tensor([0, 1, 5]))])
    with pytest.raises(ValueError, match="sem_seg must be"):
        model([image], [dict(target, sem_seg=target["sem_seg"][:10])])
    with pytest.raises(ValueError, match="image 0 must be a 3xHxW"):
        model.eval()([torch.rand(64, 64)])


# ---------------------------------------------------------------------------------------------
# transform


def test_transform_resize_pad_and_map_back():
    t = PanopticTransform(128, 200, 32, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    assert resized_size(100, 150, 128, 200) == (128, 192)
    assert resized_size(100, 300, 128, 200) == (67, 200)
    images = [torch.full((3, 100, 150), 0.75), torch.full((3, 64, 64), 0.5)]
    masks = torch.zeros(1, 100, 150, dtype=torch.bool)
    masks[0, :50] = True
    targets = [
        {"masks": masks, "labels": torch.tensor([0]), "sem_seg": torch.ones(100, 150, dtype=torch.long)}
    ] * 2
    targets[1] = {
        "masks": masks[:, :64, :64],
        "labels": torch.tensor([0]),
        "sem_seg": torch.ones(64, 64).long(),
    }
    t.eval()
    batch, out = t(images, targets)
    assert batch.image_sizes == [(128, 192), (128, 128)]
    assert batch.tensors.shape == (2, 3, 128, 192)
    torch.testing.assert_close(batch.tensors[0, :, :128, :192], torch.ones(3, 128, 192))  # (0.75-0.5)/0.25
    assert torch.all(batch.tensors[1, :, :, 128:] == 0)  # padding after normalisation
    assert out[0]["masks"].shape == (1, 128, 192) and int(out[0]["masks"][0, :, 0].sum()) == 64
    assert torch.all(out[1]["sem_seg"][:, 128:] == 255) and torch.all(out[1]["sem_seg"][:, :128] == 1)
    assert not out[1]["masks"][:, :, 128:].any()
    t.train()  # training: sizes are kept (the data pipeline resized), only padding
    batch, _ = t(images)
    assert batch.image_sizes == [(100, 150), (64, 64)] and batch.tensors.shape == (2, 3, 128, 160)
    # postprocess_map == upsample the whole padded map, crop, resize (the cheap path is exact)
    x = torch.randn(4, 32, 48)
    ref = F.interpolate(x[None], size=(128, 192), mode="bilinear", align_corners=False)[0][:, :101, :150]
    ref = F.interpolate(ref[None], size=(80, 120), mode="bilinear", align_corners=False)[0]
    got = PanopticTransform.postprocess_map(x, (128, 192), (101, 150), (80, 120))
    torch.testing.assert_close(got, ref)


# ---------------------------------------------------------------------------------------------
# SOLOv2 pieces


def test_dynamic_conv_is_a_1x1_conv_and_point_nms_keeps_local_maxima():
    k, f = torch.randn(5, 8), torch.randn(8, 6, 7)
    torch.testing.assert_close(dynamic_conv(k, f), F.conv2d(f[None], k[:, :, None, None])[0])
    s = torch.tensor([[[[0.1, 0.9, 0.2], [0.3, 0.8, 0.95], [0.4, 0.1, 0.0]]]])
    kept = point_nms(s)[0, 0]
    # literal transcription: keep s[i,j] iff it is the max of the 2x2 window ending at (i, j)
    for i in range(3):
        for j in range(3):
            window = s[0, 0, max(i - 1, 0) : i + 1, max(j - 1, 0) : j + 1]
            expect = s[0, 0, i, j] if s[0, 0, i, j] == window.max() else 0.0
            assert float(kept[i, j]) == pytest.approx(float(expect))
    c = coord_features(torch.zeros(2, 3, 4, 5))
    assert c.shape == (2, 2, 4, 5) and c[0, 0, 0, 0] == -1 and c[0, 0, 0, -1] == 1 and c[0, 1, -1, 0] == 1


def _instance_head(in_channels, num_things, position, **fields):
    """SOLOv2InstanceHead.from_config on the default config with some instance/inference fields set."""
    cfg = Config()
    for name, value in fields.items():
        section = cfg.model.instance if hasattr(cfg.model.instance, name) else cfg.model.inference
        assert hasattr(section, name), name
        setattr(section, name, value)
    return SOLOv2InstanceHead.from_config(cfg, in_channels, num_things, position)


def test_level_features_follow_solov2_split_feats():
    from cfnet.modules import build_position_module

    head = _instance_head(16, 3, build_position_module("none", 16), channels=32, mask_feature_channels=16)
    feats = {f"p{i}": torch.randn(1, 16, 64 // 2**i, 96 // 2**i) for i in range(2, 7)}
    feats["p6"] = torch.randn(1, 16, 1, 2)
    levels = head.level_features(feats)
    assert [tuple(x.shape[-2:]) for x in levels] == [(8, 12), (8, 12), (4, 6), (2, 3), (2, 3)]
    torch.testing.assert_close(levels[0], F.interpolate(feats["p2"], scale_factor=0.5, mode="bilinear"))
    cate, kernel, mask_feats = head(feats)
    assert [tuple(c.shape) for c in cate] == [(1, 3, g, g) for g in (40, 36, 24, 16, 12)]
    assert [tuple(k.shape) for k in kernel] == [(1, 16, g, g) for g in (40, 36, 24, 16, 12)]
    assert mask_feats.shape == (1, 16, 16, 24)
    torch.testing.assert_close(torch.sigmoid(head.cate_pred.bias), torch.full((3,), 0.01))


def test_mask_feature_branch_structure():
    branch = MaskFeatureBranch(16, 8, 12, num_levels=4)
    convs = [sum(isinstance(m, torch.nn.Conv2d) for m in lvl.modules()) for lvl in branch.levels]
    assert convs == [1, 1, 2, 3]  # level j: j convs, each followed by a x2 upsample
    assert branch.levels[3][0][0].in_channels == 18  # CoordConv at the coarsest level
    assert branch.levels[2][0][0].in_channels == 16
    out = branch([torch.randn(1, 16, 32 // 2**i, 32 // 2**i) for i in range(4)])
    assert out.shape == (1, 12, 32, 32) and out.min() >= 0  # 1x1 conv + GN + ReLU


def test_instance_losses_match_a_literal_transcription():
    torch.manual_seed(0)
    from cfnet.modules import build_position_module

    head = _instance_head(
        8,
        3,
        build_position_module("coords", 8),
        num_grids=[8, 6],
        strides=[8, 8],
        scale_ranges=[[1, 24], [12, 64]],
        num_convs=1,
        channels=16,
        mask_feature_channels=8,
        mask_feature_levels=2,
        soft_mask_targets=True,
    )
    feats = {f"p{i}": torch.randn(2, 8, 64 // 2**i, 64 // 2**i) for i in range(2, 7)}
    _, target = draw_scene(3, 64)
    targets = [target, {"masks": target["masks"][:0], "labels": target["labels"][:0]}]
    cate, kernel, mask_feats = head(feats)
    losses = head.losses(cate, kernel, mask_feats, targets)
    # loop transcription of SOLOv2's loss: dice over positives (mean x 3), focal sum / (P + 1)
    dices, logits, labels, num_pos = [], [], [], 0
    for b, t in enumerate(targets):
        levels = assign_targets(
            t["masks"],
            t["labels"],
            num_things=3,
            num_grids=[8, 6],
            scale_ranges=[[1, 24], [12, 64]],
            mask_size=(16, 16),
            soft_mask_targets=True,
        )
        for lvl, lt in enumerate(levels):
            g = [8, 6][lvl]
            for cell in range(g * g):
                logits.append(cate[lvl][b, :, cell // g, cell % g])
                labels.append(int(lt.labels.reshape(-1)[cell]))
            for p, cell in enumerate(lt.positive_index.tolist()):
                k = kernel[lvl][b, :, cell // g, cell % g]
                mask = torch.sigmoid((k[:, None, None] * mask_feats[b]).sum(0))
                dices.append(dice_loss(mask[None], lt.mask_targets[p][None])[0])
                num_pos += 1
    assert num_pos > 0
    torch.testing.assert_close(losses["loss_mask"], 3.0 * torch.stack(dices).mean())
    focal = sigmoid_focal_loss(torch.stack(logits), torch.tensor(labels))
    torch.testing.assert_close(losses["loss_cate"], focal / (num_pos + 1))


def test_instance_inference_known_answer():
    """Hand-made kernels on hand-made mask features: thresholds, area filter, maskness, NMS."""
    from cfnet.modules import build_position_module

    head = _instance_head(
        4,
        2,
        build_position_module("none", 4),
        num_grids=[2],
        strides=[8],
        scale_ranges=[[1, 64]],
        num_convs=1,
        channels=8,
        mask_feature_channels=3,
        mask_feature_levels=1,
        score_thr=0.1,
        update_thr=0.3,
        mask_thr=0.5,
        min_mask_area_ratio=1.0,
    )
    # 8x8 mask-feature map (image 32x32): channel 0 = +8 on a 4x4 square, -8 elsewhere;
    # channel 1 = +8 on a 1x2 sliver (area 2 <= stride 8: filtered); channel 2 = constant 1.
    f = torch.full((1, 3, 8, 8), -8.0)
    f[0, 0, 2:6, 2:6] = 8.0
    f[0, 1, 0, 0:2] = 8.0
    f[0, 2] = 1.0
    kernels = torch.zeros(1, 3, 2, 2)
    kernels[0, :, 1, 1] = torch.tensor([1.0, 0.0, 0.0])  # the square, confident mask
    kernels[0, :, 0, 1] = torch.tensor([0.25, 0.0, 0.0])  # the square again, soft (p = sigmoid(2))
    kernels[0, :, 1, 0] = torch.tensor([0.0, 1.0, 0.0])  # the sliver
    kernels[0, :, 0, 0] = torch.tensor([0.0, 0.0, -5.0])  # empty mask
    scores = torch.full((1, 2, 2, 2), 0.01)
    scores[0, 0, 1, 1] = 0.9
    scores[0, 1, 0, 1] = 0.8  # other class: class-aware Matrix NMS does not decay it
    scores[0, 0, 1, 0] = 0.7
    scores[0, 0, 0, 0] = 0.5
    # every candidate is the max of its 2x2 point-NMS window (rows i-1..i, cols j-1..j) in its class
    logits = torch.logit(scores)
    out = head.predict([logits], [kernels], f, 0, (32, 32), (32, 32))
    assert out["labels"].tolist() == [0, 1]
    p1 = torch.sigmoid(torch.tensor(8.0))
    p2 = torch.sigmoid(torch.tensor(2.0))
    torch.testing.assert_close(out["scores"], torch.stack([0.9 * p1, 0.8 * p2]))
    expect = torch.zeros(32, 32, dtype=torch.bool)
    expect[8:24, 8:24] = True
    # bilinear x4 of a hard-edged 4x4 block, thresholded at 0.5: the edges land on the block's
    # edges (weight 0.625 > 0.5 just inside) but each corner pixel has 0.625² < 0.5
    for i in (8, 23):
        for j in (8, 23):
            expect[i, j] = False
    assert (out["masks"][0] ^ expect).sum() == 0
    # the SOLOv2 area filter with ratio 0 keeps the sliver
    head.min_mask_area_ratio = 0.0
    out = head.predict([logits], [kernels], f, 0, (32, 32), (32, 32))
    assert out["labels"].tolist() == [0, 1, 0]


# ---------------------------------------------------------------------------------------------
# the whole chain learns


def panoptic_quality(outputs, targets, num_things: int, num_classes: int, to_contiguous) -> float:
    """Exact PQ (Kirillov et al.): segments match at IoU > 0.5 within a category;
    PQ_c = Σ IoU / (TP + FP/2 + FN/2), averaged over the categories that occur."""
    stats = {c: [0.0, 0, 0, 0] for c in range(num_classes)}  # IoU sum, TP, FP, FN
    for out, target in zip(outputs, targets):
        pan = out["panoptic_seg"]
        preds = [(to_contiguous(s["category_id"]), pan == s["id"]) for s in out["segments_info"]]
        gts = [(int(label), mask) for label, mask in zip(target["labels"], target["masks"])]
        gts += [
            (c, target["sem_seg"] == c)
            for c in range(num_things, num_classes)
            if (target["sem_seg"] == c).any()
        ]
        used = set()
        for label, mask in gts:
            for j, (plabel, pmask) in enumerate(preds):
                if plabel != label or j in used:
                    continue
                iou = float((mask & pmask).sum()) / float((mask | pmask).sum())
                if iou > 0.5:  # at most one prediction can pass: segments do not overlap
                    stats[label][0] += iou
                    stats[label][1] += 1
                    used.add(j)
                    break
            else:
                stats[label][3] += 1
        for j, (plabel, _) in enumerate(preds):
            if j not in used:
                stats[plabel][2] += 1
    per_class = [s[0] / (s[1] + s[2] / 2 + s[3] / 2) for s in stats.values() if s[1] + s[2] + s[3]]
    return 100.0 * sum(per_class) / len(per_class)


def test_panoptic_quality_helper_known_answer():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :4, :4] = True
    masks[1, 4:, 4:] = True
    sem = torch.full((8, 8), 3)
    sem[masks.any(0)] = 0
    target = {"masks": masks, "labels": torch.tensor([0, 0]), "sem_seg": sem}
    pan = torch.full((8, 8), 3, dtype=torch.long)  # stuff everywhere else: 40 px over its 32
    pan[:4, :4] = 1  # the first thing, exact: IoU 1
    pan[4:, 4:6] = 2  # half of the second thing: IoU 0.5 is not > 0.5, so one FP and one FN
    segs = [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 1}, {"id": 3, "category_id": 4}]
    pq = panoptic_quality([{"panoptic_seg": pan, "segments_info": segs}], [target], 3, 6, lambda c: c - 1)
    thing = 1.0 / (1 + 0.5 + 0.5)
    stuff = 32 / 40
    assert pq == pytest.approx(100 * (thing + stuff) / 2)


@pytest.mark.slow
def test_shapes_tiny_overfits_a_few_images_to_high_pq():
    """The whole chain learns: the shapes-tiny preset, trained with its own solver settings
    (AdamW, lr, weight decay, linear warm-up, gradient clipping), memorises two scenes."""
    torch.manual_seed(0)
    size, iters = 64, 120
    cfg = get_config("shapes-tiny", [f"model.input.min_size_test={size}"])
    solver = cfg.solver
    assert solver.optimizer == "adamw"
    model = build_model(cfg)
    data = [draw_scene(seed, size) for seed in (0, 1)]
    images, targets = [d[0] for d in data], [d[1] for d in data]
    opt = torch.optim.AdamW(model.parameters(), lr=solver.base_lr, weight_decay=solver.weight_decay)
    model.train()
    history = []
    for it in range(iters):
        alpha = min(1.0, it / solver.warmup_iters)
        for group in opt.param_groups:
            group["lr"] = solver.base_lr * (solver.warmup_factor * (1 - alpha) + alpha)
        losses = model(images, targets)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), solver.clip_grad_norm)
        opt.step()
        history.append(float(loss.detach()))
    assert sum(history[-5:]) < 0.1 * sum(history[:5])
    model.eval()
    outputs = model(images)
    cats = model.categories
    pq = panoptic_quality(outputs, targets, cats.num_things, cats.num_classes, cats.contiguous)
    assert pq >= 90.0, f"PQ {pq:.1f} after {iters} iterations"


def test_parameters_are_finite_and_heads_initialised_like_solov2():
    model = build_model(get_config("shapes-tiny"))
    head = model.instance_head
    prior = -math.log((1 - 0.01) / 0.01)
    torch.testing.assert_close(head.cate_pred.bias, torch.full_like(head.cate_pred.bias, prior))
    assert head.kernel_pred.weight.std() < 0.02 and torch.all(head.kernel_pred.bias == 0)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_head_settings_come_from_the_config_by_name():
    """from_config maps config fields to keyword-only arguments by name; none is left out or renamed."""
    import inspect

    from cfnet.config import InferenceConfig, InstanceConfig, SemanticConfig, config_kwargs
    from cfnet.heads import SemanticHead

    def keyword_only(cls):
        params = inspect.signature(cls).parameters.values()
        return {p.name for p in params if p.kind is p.KEYWORD_ONLY}

    fields = {f for c in (InstanceConfig, InferenceConfig) for f in c.__dataclass_fields__}
    assert keyword_only(SOLOv2InstanceHead) - fields == {"mask_branch_channels"}  # not a config key
    assert keyword_only(SemanticHead) <= set(SemanticConfig.__dataclass_fields__)
    cfg = get_config("shapes-tiny", ["model.instance.sigma=0.3", "model.inference.nms_sigma=3.0"])
    kwargs = config_kwargs(SOLOv2InstanceHead, cfg.model.instance, cfg.model.inference)
    assert kwargs["sigma"] == 0.3 and kwargs["nms_sigma"] == 3.0 and "position" not in kwargs
    model = build_model(cfg)
    head = model.instance_head
    assert (head.sigma, head.nms_sigma, head.num_grids) == (0.3, 3.0, [16, 12, 8])
    assert model.semantic_head.tower[0][0].out_channels == cfg.model.semantic.channels
