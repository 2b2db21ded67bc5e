"""Backbone feature extractor (paper §3.1): torchvision ResNet + FeaturePyramidNetwork.

``ResNetFPN(x)`` returns an ``OrderedDict`` with keys ``p2 .. p6`` at strides 4, 8, 16, 32, 64,
all with ``fpn_channels`` channels.

Choices (written down because the paper leaves them open):

- **ResNet**: torchvision's ``resnet18/34/50/101`` (V1.5: the stride sits on the 3×3 conv),
  plus ``depth = 10`` (torchvision's ``ResNet`` with one basic block per stage; no ImageNet weights
  exist for it) for the CPU-trained ``shapes-tiny`` preset, whose shipped checkpoint must stay
  small and train in 30 CPU-minutes;
  random init unless ``cfg.model.backbone.pretrained`` names a member of torchvision's weights
  enum (``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``, ``"DEFAULT"``); those load through
  ``torchvision.models`` — the only code path that may download, and only when asked.
- **Norm**: ``frozen_bn`` (``torchvision.ops.FrozenBatchNorm2d``, as detectron2/mmdet fine-tune an
  ImageNet ResNet), ``bn`` (trainable BatchNorm, for from-scratch training such as
  ``shapes-tiny``) or ``gn`` (GroupNorm with 32 groups; cannot load BN-trained weights).
- **Frozen stages**: ``frozen_stages = k`` freezes the stem and ``layer1 .. layerk``
  (``k = 1``: stem + res2, detectron2's ``FREEZE_AT = 2`` / mmdet's ``frozen_stages = 1``);
  ``0`` freezes nothing. Frozen BatchNorm layers of frozen stages stay in eval mode.
- **DCN** (the paper's "*" rows): every 3×3 conv of stages 3–5 (``layer2 .. layer4``; the
  bottleneck's ``conv2``, both convs of a basic block) becomes a
  ``torchvision.ops.DeformConv2d`` with the original weights and an offset conv (3×3, 18
  channels) initialised to zero, so a freshly converted network computes exactly what the
  plain one does.
- **FPN**: ``torchvision.ops.FeaturePyramidNetwork`` on C2–C5 gives P2–P5.
- **P6** is torchvision's ``LastLevelMaxPool``: a 1×1 max-pool with stride 2 (a subsampling of
  P5). This is what SOLOv2 uses (detectron2's ``LastLevelMaxPool``, mmdet's FPN with
  ``num_outs=5`` and no extra convs), so P6 adds no parameters.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import DeformConv2d, FeaturePyramidNetwork, FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from cfnet.config import Config

__all__ = ["ResNetFPN", "DeformConv3x3", "build_backbone", "build_resnet", "norm_layer_for"]

DEPTHS = (10, 18, 34, 50, 101)
NORMS = ("frozen_bn", "bn", "gn")
_STAGES = ("layer1", "layer2", "layer3", "layer4")


def norm_layer_for(norm: str):
    """The ``norm_layer`` callable torchvision's ResNet takes, for a config norm name."""
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "gn":
        return lambda channels: nn.GroupNorm(32, channels)
    raise ValueError(f"model.backbone.norm: {norm!r} is not one of {', '.join(NORMS)}")


class DeformConv3x3(nn.Module):
    """A 3×3 deformable conv (Dai et al. 2017) standing in for a plain ``nn.Conv2d``.

    The offsets come from a 3×3 conv on the same input (2·3·3 channels), initialised to zero so
    that the module starts as the conv it replaces (whose weights it copies).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.kernel_size != (3, 3) or conv.groups != 1:
            raise ValueError(f"DeformConv3x3 replaces ungrouped 3x3 convs, got {conv}")
        self.offset = nn.Conv2d(
            conv.in_channels, 18, 3, stride=conv.stride, padding=conv.padding, dilation=conv.dilation
        )
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.conv = DeformConv2d(
            conv.in_channels,
            conv.out_channels,
            3,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            bias=conv.bias is not None,
        )
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight)
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x, self.offset(x))


def _convert_to_dcn(resnet: nn.Module) -> None:
    """Replace the 3×3 convs of stages 3–5 (``layer2 .. layer4``) by :class:`DeformConv3x3`."""
    for stage in _STAGES[1:]:
        for block in getattr(resnet, stage):
            for name in ("conv1", "conv2"):
                conv = getattr(block, name)
                if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3):
                    setattr(block, name, DeformConv3x3(conv))


def build_resnet(depth: int, norm: str = "frozen_bn", pretrained: str | None = None, dcn: bool = False):
    """A torchvision ResNet (random init, or the named torchvision weights), optionally with DCN."""
    if depth not in DEPTHS:
        raise ValueError(f"model.backbone.depth: {depth!r} is not one of {', '.join(map(str, DEPTHS))}")
    name = f"resnet{depth}"
    weights = None
    if depth == 10:
        if pretrained is not None:
            raise ValueError(
                "model.backbone.pretrained: torchvision has no ImageNet weights for depth 10; use null"
            )
        model = torchvision.models.resnet.ResNet(
            torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], norm_layer=norm_layer_for(norm)
        )
        if dcn:
            _convert_to_dcn(model)
        return model
    if pretrained is not None:
        enum = torchvision.models.get_model_weights(name)
        try:
            weights = enum[pretrained]
        except KeyError:
            valid = ", ".join(w.name for w in enum) + ", DEFAULT"
            raise ValueError(
                f"model.backbone.pretrained: {pretrained!r} is not a torchvision weights name for "
                f"{name} (valid: {valid}); use null for random init"
            ) from None
        if norm == "gn":
            raise ValueError(
                "model.backbone.pretrained: torchvision's ImageNet weights are BatchNorm-trained; "
                "they cannot be loaded with model.backbone.norm=gn"
            )
    model = getattr(torchvision.models, name)(weights=weights, norm_layer=norm_layer_for(norm))
    if dcn:
        _convert_to_dcn(model)
    return model


class ResNetFPN(nn.Module):
    """ResNet body (``.body``) + FPN (``.fpn``); ``forward(x) -> OrderedDict(p2..p6)``."""

    def __init__(
        self,
        depth: int = 50,
        *,
        norm: str = "frozen_bn",
        pretrained: str | None = None,
        dcn: bool = False,
        frozen_stages: int = 1,
        fpn_channels: int = 256,
    ) -> None:
        super().__init__()
        if not 0 <= frozen_stages <= 4:
            raise ValueError(f"model.backbone.frozen_stages: expected 0..4, got {frozen_stages}")
        resnet = build_resnet(depth, norm, pretrained, dcn)
        self.body = IntermediateLayerGetter(resnet, {s: f"c{i + 2}" for i, s in enumerate(_STAGES)})
        width = 64 if depth in (10, 18, 34) else 256  # channels of C2 (basic block vs bottleneck)
        in_channels = [width * 2**i for i in range(4)]
        self.fpn = FeaturePyramidNetwork(in_channels, fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels
        self.strides = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
        self.frozen_stages = frozen_stages
        self._freeze()

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages == 0:
            return []
        stem = [self.body.conv1, self.body.bn1]
        return stem + [getattr(self.body, s) for s in _STAGES[: self.frozen_stages]]

    def _freeze(self) -> None:
        for module in self._frozen_modules():
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNetFPN:
        super().train(mode)
        # Frozen stages keep their BatchNorm statistics fixed too.
        for module in self._frozen_modules():
            module.eval()
        return self

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        feats = self.fpn(self.body(x))  # keys c2..c5, then "pool"
        return OrderedDict((f"p{i + 2}", f) for i, f in enumerate(feats.values()))


def build_backbone(cfg: Config) -> ResNetFPN:
    """The backbone of ``cfg.model.backbone``."""
    b = cfg.model.backbone
    return ResNetFPN(
        b.depth,
        norm=b.norm,
        pretrained=b.pretrained,
        dcn=b.dcn,
        frozen_stages=b.frozen_stages,
        fpn_channels=b.fpn_channels,
    )
