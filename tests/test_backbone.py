"""Backbone: ResNet + FPN → P2..P6, norms, frozen stages, DCN, torchvision weights path."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from cfnet.backbone import DeformConv3x3, ResNetFPN, build_backbone, build_resnet
from cfnet.config import get_config


@pytest.mark.parametrize("depth,channels", [(18, 32), (50, 64)])
def test_pyramid_keys_strides_and_channels(depth, channels):
    torch.manual_seed(0)
    net = ResNetFPN(depth, fpn_channels=channels).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = net(x)
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    for key, stride in net.strides.items():
        assert out[key].shape == (2, channels, -(-64 // stride), -(-96 // stride)), key
    # P6 is torchvision's LastLevelMaxPool: a stride-2 subsampling of P5 (SOLOv2's P6).
    assert torch.equal(out["p6"], out["p5"][..., ::2, ::2])


def test_fpn_is_torchvision_and_p6_has_no_parameters():
    net = ResNetFPN(18, fpn_channels=32)
    assert isinstance(net.fpn, torchvision.ops.FeaturePyramidNetwork)
    # 4 lateral 1x1 + 4 output 3x3 convs, nothing for P6
    lateral = sum(c * 32 + 32 for c in (64, 128, 256, 512))
    output = 4 * (9 * 32 * 32 + 32)
    assert sum(p.numel() for p in net.fpn.parameters()) == lateral + output


def test_frozen_stages_and_norms():
    net = ResNetFPN(18, norm="frozen_bn", frozen_stages=1, fpn_channels=32)
    frozen = [net.body.conv1, net.body.bn1, net.body.layer1]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in net.body.layer2.parameters())
    assert isinstance(net.body.bn1, FrozenBatchNorm2d)

    bn = ResNetFPN(18, norm="bn", frozen_stages=2, fpn_channels=32).train()
    assert not any(p.requires_grad for p in bn.body.layer2.parameters())
    assert all(p.requires_grad for p in bn.body.layer3.parameters())
    # BatchNorm of frozen stages keeps its statistics (eval mode) while the rest trains
    assert not bn.body.layer2.training and not bn.body.bn1.training and bn.body.layer3.training

    none = ResNetFPN(18, norm="gn", frozen_stages=0, fpn_channels=32)
    assert isinstance(none.body.bn1, nn.GroupNorm)
    assert all(p.requires_grad for p in none.parameters())


def test_dcn_replaces_the_bottleneck_3x3_convs_of_stages_3_to_5():
    from cfnet.backbone import _convert_to_dcn

    net = build_resnet(50, "frozen_bn")
    _convert_to_dcn(net)
    assert not any(isinstance(m, DeformConv3x3) for m in net.layer1.modules())
    for stage in ("layer2", "layer3", "layer4"):
        for block in getattr(net, stage):
            assert isinstance(block.conv2, DeformConv3x3)  # the bottleneck's 3x3
            assert isinstance(block.conv1, nn.Conv2d) and block.conv1.kernel_size == (1, 1)
    assert net.layer2[0].conv2.conv.stride == (2, 2)


def test_dcn_starts_as_the_plain_network_and_learns_offsets():
    from cfnet.backbone import _convert_to_dcn

    torch.manual_seed(0)
    plain = build_resnet(18, "bn").eval()
    dcn = copy.deepcopy(plain)
    _convert_to_dcn(dcn)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        # zero-initialised offsets: identical to the network it was converted from
        torch.testing.assert_close(dcn(x), plain(x), rtol=1e-4, atol=1e-4)
    dcn(x).square().sum().backward()
    assert dcn.layer3[0].conv2.offset.weight.grad.abs().sum() > 0


def test_dcn_basic_block_and_from_config():
    cfg = get_config("shapes-tiny", ["model.backbone.dcn=true"])
    net = build_backbone(cfg).eval()
    block = net.body.layer3[0]
    assert isinstance(block.conv1, DeformConv3x3) and isinstance(block.conv2, DeformConv3x3)
    assert not isinstance(net.body.layer1[0].conv1, DeformConv3x3)
    out = net(torch.randn(1, 3, 32, 32))
    assert out["p2"].shape == (1, cfg.model.backbone.fpn_channels, 8, 8)


def test_pretrained_loads_through_torchvision_weights_api(monkeypatch):
    """The named weights go through torchvision's enum; the download itself is stubbed."""
    torch.manual_seed(1)
    reference = torchvision.models.resnet18().state_dict()
    calls = []

    def fake_get_state_dict(self, *args, **kwargs):
        calls.append(self)
        return reference

    monkeypatch.setattr(
        torchvision.models.ResNet18_Weights, "get_state_dict", fake_get_state_dict, raising=False
    )
    net = ResNetFPN(18, pretrained="IMAGENET1K_V1", fpn_channels=32)
    assert calls == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1]
    torch.testing.assert_close(net.body.conv1.weight, reference["conv1.weight"])
    torch.testing.assert_close(net.body.layer4[1].bn2.running_var, reference["layer4.1.bn2.running_var"])


def test_bad_backbone_settings_name_the_field():
    with pytest.raises(ValueError, match="model.backbone.pretrained"):
        ResNetFPN(18, pretrained="NOT_A_WEIGHT")
    with pytest.raises(ValueError, match="model.backbone.pretrained"):
        ResNetFPN(18, pretrained="IMAGENET1K_V1", norm="gn")
    with pytest.raises(ValueError, match="model.backbone.depth"):
        build_resnet(42)
    with pytest.raises(ValueError, match="model.backbone.norm"):
        ResNetFPN(18, norm="syncbn")
    with pytest.raises(ValueError, match="model.backbone.frozen_stages"):
        ResNetFPN(18, frozen_stages=7)


def test_backbones_are_a_registry_the_config_reads():
    from cfnet.backbone import BACKBONES
    from cfnet.config import ConfigError, choices, validate

    assert list(BACKBONES)[:2] == ["resnet", "regnet_y_400mf"]
    assert choices("model.backbone.name") == tuple(BACKBONES)
    assert get_config("shapes-tiny").model.backbone.name == "resnet"
    with pytest.raises(ConfigError, match="model.backbone.name.*resnet, regnet_y_400mf"):
        validate(get_config("shapes-tiny", ["model.backbone.name=vgg"]))


def test_second_family_trains_and_evaluates_on_a_tiny_input():
    """regnet_y_400mf through create_feature_extractor + FPN: P2..P6, forward+backward, both modes."""
    torch.manual_seed(0)
    cfg = get_config("shapes-tiny", ["model.backbone.name=regnet_y_400mf", "model.backbone.fpn_channels=16"])
    net = build_backbone(cfg)
    assert net.out_channels == 16
    x = torch.randn(2, 3, 64, 64)
    out = net.train()(x)
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    assert [tuple(v.shape) for v in out.values()] == [(2, 16, 64 // s, 64 // s) for s in (4, 8, 16, 32, 64)]
    sum(v.square().mean() for v in out.values()).backward()
    assert net.fpn.inner_blocks[0][0].weight.grad is not None
    trunk = dict(net.body.named_parameters())
    frozen = cfg.model.backbone.frozen_stages  # shapes-tiny: 0 (bn, from scratch)
    assert all(p.requires_grad for p in trunk.values()) == (frozen == 0)
    with torch.no_grad():
        ev = net.eval()(x)
    assert all(torch.isfinite(v).all() for v in ev.values())
    # frozen stages: stem + block1 do not train and keep their norm statistics
    net2 = build_backbone(
        get_config("shapes-tiny", ["model.backbone.name=regnet_y_400mf", "model.backbone.frozen_stages=1"])
    )
    grads = {
        n.split(".")[0] + "." + n.split(".")[1]: p.requires_grad for n, p in net2.body.named_parameters()
    }
    assert grads["stem.0"] is False and grads["trunk_output.block1"] is False
    assert grads["trunk_output.block2"] is True
    assert not net2.train().body.get_submodule("stem").training


def test_model_heads_size_themselves_from_the_backbone():
    from cfnet.model import build_model

    cfg = get_config("shapes-tiny", ["model.backbone.name=regnet_y_400mf", "model.backbone.fpn_channels=16"])
    model = build_model(cfg)
    assert model.backbone.out_channels == 16 and model.instance_head.in_channels == 16


def test_second_family_pretrained_only_when_asked(monkeypatch):
    """regnet_y_400mf's weights go through torchvision's enum (download stubbed), only when named."""
    torch.manual_seed(2)
    reference = torchvision.models.regnet_y_400mf().state_dict()
    calls = []

    def fake_get_state_dict(self, *args, **kwargs):
        calls.append(self)
        return reference

    monkeypatch.setattr(
        torchvision.models.RegNet_Y_400MF_Weights, "get_state_dict", fake_get_state_dict, raising=False
    )
    base = ["model.backbone.name=regnet_y_400mf", "model.backbone.fpn_channels=8"]
    build_backbone(get_config("shapes-tiny", base))
    assert calls == []
    net = build_backbone(
        get_config(
            "shapes-tiny", base + ["model.backbone.pretrained=IMAGENET1K_V2", "model.backbone.norm=frozen_bn"]
        )
    )
    assert calls == [torchvision.models.RegNet_Y_400MF_Weights.IMAGENET1K_V2]
    torch.testing.assert_close(net.body.get_submodule("stem.0").weight, reference["stem.0.weight"])
    with pytest.raises(ValueError, match="model.backbone.pretrained.*regnet_y_400mf"):
        build_backbone(get_config("shapes-tiny", base + ["model.backbone.pretrained=NOPE"]))
    with pytest.raises(ValueError, match="model.backbone.dcn"):
        build_backbone(get_config("shapes-tiny", base + ["model.backbone.dcn=true"]))
