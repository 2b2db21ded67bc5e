"""The two task branches of Fig. 2 and their config-facing builders.

- :class:`~cfnet.heads.instance.SOLOv2InstanceHead` — SOLOv2 with the shared ICM (or a Table 6
  peer) on P2–P6;
- :class:`~cfnet.heads.semantic.SemanticHead` — UPSNet-style head with the shared SCM (or a
  Table 5 peer) on P2–P5.
"""

from __future__ import annotations

from cfnet.config import Config
from cfnet.heads.instance import MaskFeatureBranch, SOLOv2InstanceHead
from cfnet.heads.semantic import SemanticHead
from cfnet.modules import build_position_module, build_semantic_module

__all__ = [
    "SOLOv2InstanceHead",
    "MaskFeatureBranch",
    "SemanticHead",
    "build_instance_head",
    "build_semantic_head",
]


def build_instance_head(cfg: Config, num_things: int) -> SOLOv2InstanceHead:
    """The instance branch of ``cfg.model.instance`` / ``.inference``, with its position module."""
    m = cfg.model
    inst, inf, cor = m.instance, m.inference, m.correlation
    channels = m.backbone.fpn_channels
    position = build_position_module(
        inst.position,
        channels,
        num_levels=cor.num_levels,
        num_refs=cor.num_refs,
        hidden_channels=cor.hidden_channels,
        function=cor.function,
    )
    return SOLOv2InstanceHead(
        channels,
        num_things,
        position,
        num_grids=inst.num_grids,
        strides=inst.strides,
        scale_ranges=inst.scale_ranges,
        sigma=inst.sigma,
        num_convs=inst.num_convs,
        channels=inst.channels,
        mask_feature_channels=inst.mask_feature_channels,
        mask_feature_levels=inst.mask_feature_levels,
        mask_coords=inst.mask_coords,
        dice_weight=inst.dice_weight,
        focal_alpha=inst.focal_alpha,
        focal_gamma=inst.focal_gamma,
        focal_weight=inst.focal_weight,
        soft_mask_targets=inst.soft_mask_targets,
        min_mask_area_ratio=inst.min_mask_area_ratio,
        score_thr=inf.score_thr,
        update_thr=inf.update_thr,
        mask_thr=inf.mask_thr,
        nms_pre=inf.nms_pre,
        max_per_img=inf.max_per_img,
        nms_kernel=inf.nms_kernel,
        nms_sigma=inf.nms_sigma,
    )


def build_semantic_head(cfg: Config, num_classes: int) -> SemanticHead:
    """The semantic branch of ``cfg.model.semantic``, with its semantic module."""
    m = cfg.model
    sem, cor = m.semantic, m.correlation
    channels = m.backbone.fpn_channels
    module = build_semantic_module(
        sem.module,
        channels,
        num_levels=cor.num_levels,
        mode=sem.scm_mode,
        hidden_channels=cor.hidden_channels,
        max_global_positions=sem.max_global_positions,
        function=cor.function,
    )
    return SemanticHead(channels, num_classes, module, num_convs=sem.num_convs, channels=sem.channels)
