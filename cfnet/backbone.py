"""Backbone feature extractors (paper §3.1): a torchvision network + FeaturePyramidNetwork.

Every backbone returns, for ``x`` of shape ``(B, 3, H, W)``, an ``OrderedDict`` with keys
``p2 .. p6`` at strides 4, 8, 16, 32, 64, all with ``out_channels`` channels (the heads size
themselves from that attribute).

:data:`BACKBONES` maps ``model.backbone.name`` to a builder ``builder(cfg) -> nn.Module``
(register more with :func:`register_backbone`):

- ``resnet`` (default): :class:`ResNetFPN`, the ResNet family with ``model.backbone.depth``;
- ``regnet_y_400mf``: torchvision's RegNetY-400MF (another family, named as torchvision names it)
  through :func:`torchvision_fpn`, which any torchvision classification model with four stages
  at strides 4–32 can use: ``torchvision.models.feature_extraction.create_feature_extractor``
  takes C2–C5 from the named nodes, the same FPN and P6 as below follow.

Notes on the ResNet family:

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

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.ops import DeformConv2d, FeaturePyramidNetwork, FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from cfnet.config import Config

__all__ = [
    "BACKBONES",
    "register_backbone",
    "build_backbone",
    "FPNBackbone",
    "ResNetFPN",
    "torchvision_fpn",
    "DeformConv3x3",
    "build_resnet",
    "norm_layer_for",
    "torchvision_weights",
]

DEPTHS = (10, 18, 34, 50, 101)
NORMS = ("frozen_bn", "bn", "gn")
_STAGES = ("layer1", "layer2", "layer3", "layer4")


def norm_layer_for(norm: str):
    """The ``norm_layer`` callable torchvision's ResNet takes, for a config norm name."""
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "gn":  # 32 groups (all ResNet widths), or the largest divisor of the width below 32
        return lambda channels: nn.GroupNorm(math.gcd(32, channels), channels)
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
    weights = torchvision_weights(name, pretrained, norm)
    model = getattr(torchvision.models, name)(weights=weights, norm_layer=norm_layer_for(norm))
    if dcn:
        _convert_to_dcn(model)
    return model


def torchvision_weights(name: str, pretrained: str | None, norm: str):
    """The member ``pretrained`` of torchvision's weights enum for model ``name`` (None: random init).

    Only the enum is looked up here; the weights download (or load from torchvision's cache) when
    the model is built with them — only when the user asked.
    """
    if pretrained is None:
        return None
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
    return weights


class FPNBackbone(nn.Module):
    """A feature extractor ``body`` (C2..C5 at strides 4..32) + torchvision FPN ``fpn`` + P6.

    ``forward(x) -> OrderedDict(p2..p6)``, ``out_channels`` channels each. ``frozen`` lists the
    submodule paths of ``body`` whose parameters are frozen and whose norms stay in eval mode.
    """

    strides = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}

    def __init__(self, body: nn.Module, in_channels: Sequence[int], fpn_channels: int, frozen=()) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(list(in_channels), fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels
        self._frozen_paths = tuple(frozen)
        self._freeze()

    def _frozen_modules(self) -> list[nn.Module]:
        return [self.body.get_submodule(p) for p in self._frozen_paths]

    def _freeze(self) -> None:
        for module in self._frozen_modules():
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> FPNBackbone:
        super().train(mode)
        # Frozen stages keep their BatchNorm statistics fixed too.
        for module in self._frozen_modules():
            module.eval()
        return self

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        feats = self.fpn(self.body(x))  # keys c2..c5, then "pool"
        return OrderedDict((f"p{i + 2}", f) for i, f in enumerate(feats.values()))


def _check_frozen_stages(frozen_stages: int) -> None:
    if not 0 <= frozen_stages <= 4:
        raise ValueError(f"model.backbone.frozen_stages: expected 0..4, got {frozen_stages}")


class ResNetFPN(FPNBackbone):
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
        _check_frozen_stages(frozen_stages)
        resnet = build_resnet(depth, norm, pretrained, dcn)
        body = IntermediateLayerGetter(resnet, {s: f"c{i + 2}" for i, s in enumerate(_STAGES)})
        width = 64 if depth in (10, 18, 34) else 256  # channels of C2 (basic block vs bottleneck)
        frozen = ("conv1", "bn1", *_STAGES[:frozen_stages]) if frozen_stages else ()
        super().__init__(body, [width * 2**i for i in range(4)], fpn_channels, frozen)
        self.frozen_stages = frozen_stages

    @classmethod
    def from_config(cls, cfg: Config) -> ResNetFPN:
        b = cfg.model.backbone
        return cls(
            b.depth,
            norm=b.norm,
            pretrained=b.pretrained,
            dcn=b.dcn,
            frozen_stages=b.frozen_stages,
            fpn_channels=b.fpn_channels,
        )


def torchvision_fpn(
    name: str,
    stem: Sequence[str],
    stages: Sequence[str],
    *,
    norm: str,
    pretrained: str | None,
    frozen_stages: int,
    fpn_channels: int,
    dcn: bool = False,
) -> FPNBackbone:
    """A torchvision classification model ``name`` as an FPN backbone.

    ``stages`` are the four graph nodes giving C2..C5 (strides 4..32), ``stem`` the modules before
    them (frozen with ``frozen_stages >= 1``, as are the first ``frozen_stages`` stages). The
    model is built with ``norm_layer`` from ``norm`` and, only if ``pretrained`` names a member of
    its torchvision weights enum, those weights.
    """
    if dcn:
        raise ValueError(f"model.backbone.dcn: deformable convs are implemented for resnet only, not {name}")
    if len(stages) != 4:
        raise ValueError(f"{name}: need four stage nodes (C2..C5), got {list(stages)}")
    _check_frozen_stages(frozen_stages)
    weights = torchvision_weights(name, pretrained, norm)
    model = torchvision.models.get_model(name, weights=weights, norm_layer=norm_layer_for(norm))
    body = create_feature_extractor(model, {node: f"c{i + 2}" for i, node in enumerate(stages)})
    with torch.no_grad():  # the stage widths, from one tiny forward pass
        was_training = body.training
        body.eval()
        in_channels = [int(f.shape[1]) for f in body(torch.zeros(1, 3, 64, 64)).values()]
        body.train(was_training)
    frozen = (*stem, *stages[:frozen_stages]) if frozen_stages else ()
    return FPNBackbone(body, in_channels, fpn_channels, frozen)


BackboneBuilder = Callable[[Config], nn.Module]
_B = TypeVar("_B", bound=BackboneBuilder)

BACKBONES: dict[str, BackboneBuilder] = {}
"""``model.backbone.name`` → ``builder(cfg) -> nn.Module`` (``out_channels``; ``forward -> p2..p6``)."""


def register_backbone(name: str) -> Callable[[_B], _B]:
    """Decorator: register ``builder(cfg)`` as ``model.backbone.name=name`` (a new config choice)."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"a backbone name must be a non-empty string without spaces around it, got {name!r}")

    def decorate(builder: _B) -> _B:
        if name in BACKBONES and BACKBONES[name] is not builder:
            raise ValueError(f"backbone {name!r} is already registered ({BACKBONES[name]!r})")
        BACKBONES[name] = builder
        return builder

    return decorate


register_backbone("resnet")(ResNetFPN.from_config)


@register_backbone("regnet_y_400mf")
def _regnet_y_400mf(cfg: Config) -> FPNBackbone:
    b = cfg.model.backbone
    return torchvision_fpn(
        "regnet_y_400mf",
        stem=("stem",),
        stages=[f"trunk_output.block{i}" for i in range(1, 5)],
        norm=b.norm,
        pretrained=b.pretrained,
        frozen_stages=b.frozen_stages,
        fpn_channels=b.fpn_channels,
        dcn=b.dcn,
    )


def build_backbone(cfg: Config) -> nn.Module:
    """The backbone registered as ``cfg.model.backbone.name`` (:data:`BACKBONES`)."""
    name = cfg.model.backbone.name
    if name not in BACKBONES:
        raise ValueError(f"model.backbone.name: {name!r} is not one of {', '.join(BACKBONES)}")
    return BACKBONES[name](cfg)
