"""The two task branches of Fig. 2 and their config-facing builders.

- :class:`~cfnet.heads.instance.SOLOv2InstanceHead` — SOLOv2 with the shared ICM (or a Table 6
  peer, from :data:`cfnet.modules.POSITION_MODULES`) on P2–P6;
- :class:`~cfnet.heads.semantic.SemanticHead` — UPSNet-style head with the shared SCM (or a
  Table 5 peer, from :data:`cfnet.modules.SEMANTIC_MODULES`) on P2–P5.

Each class has a ``from_config(cfg, in_channels, ...)`` classmethod: the cfg-to-arguments mapping
lives there, by field name (:func:`cfnet.config.config_kwargs`). ``in_channels`` is the backbone's
``out_channels``.
"""

from __future__ import annotations

from cfnet.config import Config
from cfnet.heads.instance import MaskFeatureBranch, SOLOv2InstanceHead
from cfnet.heads.semantic import SemanticHead

__all__ = [
    "SOLOv2InstanceHead",
    "MaskFeatureBranch",
    "SemanticHead",
    "build_instance_head",
    "build_semantic_head",
]


def build_instance_head(cfg: Config, num_things: int, in_channels: int) -> SOLOv2InstanceHead:
    """The instance branch of ``cfg.model.instance`` / ``.inference``, with its position module."""
    return SOLOv2InstanceHead.from_config(cfg, in_channels, num_things)


def build_semantic_head(cfg: Config, num_classes: int, in_channels: int) -> SemanticHead:
    """The semantic branch of ``cfg.model.semantic``, with its semantic module."""
    return SemanticHead.from_config(cfg, in_channels, num_classes)
