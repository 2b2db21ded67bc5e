"""Semantic segmentation branch (paper §3.1, after UPSNet / Xiong et al. 2019).

``P2 … P5 → module (shared) → tower (shared) → upsample to stride 4 → concat → 1×1 conv``:

- ``module`` is the semantic module of Table 5, one instance shared by the four levels:
  ``scm`` (the SCM of §3.3, Eqs. 8–9, returning ``x + f^S``), ``attention`` (non-local block)
  or ``none`` (identity).
- ``tower`` is ``num_convs`` stacked 3×3 conv + GN + ReLU (the paper's 4; Table 8's baseline 3
  and "deeper head" 7), also shared across levels, as UPSNet applies one subnet to every level.
- each level's output is upsampled (bilinear) to P2's size (stride 4), the four are
  concatenated and a 1×1 conv predicts logits over all ``T + S`` contiguous categories.

``loss`` upsamples the stride-4 logits to the padded input resolution (as Panoptic FPN) and takes
the cross-entropy with ignore index 255 (void, crowd and padding); the caller multiplies by λ.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cfnet.config import Config, config_kwargs
from cfnet.heads.instance import conv_gn_relu
from cfnet.losses import semantic_loss

__all__ = ["SemanticHead", "SEMANTIC_LEVELS"]

SEMANTIC_LEVELS = ("p2", "p3", "p4", "p5")


class SemanticHead(nn.Module):
    """UPSNet-style semantic head with a shared semantic module; ``forward -> (B, classes, H/4, W/4)``.

    ``num_convs`` and ``channels`` are the fields of ``cfg.model.semantic`` of the same names;
    :meth:`from_config` maps them.
    """

    @classmethod
    def from_config(
        cls, cfg: Config, in_channels: int, num_classes: int, module: nn.Module | None = None
    ) -> SemanticHead:
        """The head of ``cfg`` on ``in_channels``-channel features, with the semantic module
        ``cfg.model.semantic.module`` unless ``module`` is given."""
        if module is None:
            from cfnet.modules import build_semantic_module

            module = build_semantic_module(cfg.model.semantic.module, in_channels, cfg)
        return cls(in_channels, num_classes, module, **config_kwargs(cls, cfg.model.semantic))

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        module: nn.Module,
        *,
        num_convs: int,
        channels: int,
    ) -> None:
        super().__init__()
        if num_convs < 0:
            raise ValueError(f"model.semantic.num_convs: expected >= 0, got {num_convs}")
        self.module = module  # shared by P2-P5 (Fig. 2)
        self.tower = nn.Sequential(
            *[conv_gn_relu(in_channels if i == 0 else channels, channels) for i in range(num_convs)]
        )
        out = channels if num_convs else in_channels
        self.predictor = nn.Conv2d(len(SEMANTIC_LEVELS) * out, num_classes, kernel_size=1)
        self.num_classes = num_classes
        for m in self.tower.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        outs = []
        size = features[SEMANTIC_LEVELS[0]].shape[-2:]
        for key in SEMANTIC_LEVELS:
            x = self.tower(self.module(features[key]))
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            outs.append(x)
        return self.predictor(torch.cat(outs, 1))

    @staticmethod
    def loss(logits: Tensor, sem_seg: Tensor) -> Tensor:
        """Cross-entropy (ignore 255) of stride-4 ``logits`` against padded (B, Hp, Wp) ``sem_seg``."""
        logits = F.interpolate(logits.float(), size=sem_seg.shape[-2:], mode="bilinear", align_corners=False)
        return semantic_loss(logits, sem_seg)
