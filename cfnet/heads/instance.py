"""Instance segmentation branch (paper §3.1): SOLOv2 (Wang et al. 2020) with the shared ICM.

Per level ``i`` of ``num_grids`` (P2, P3, … up to P6):

1. **Level feature.** SOLOv2's ``split_feats``: a level whose configured stride differs from its
   FPN stride is resized (bilinear) to the map of the FPN level with that stride — with the
   SOLOv2 strides ``[8, 8, 16, 32, 32]`` P2 is halved to P3's size and P6 is brought to P5's.
2. **Position module** (Table 6), one instance shared by all levels, applied to the level
   feature at its own resolution: ``icm`` (Eqs. 10–11), ``coords`` (SOLOv2's CoordConv: +2
   coordinate channels), ``sine`` or ``none``.
3. The result is resized (bilinear) to the ``S×S`` grid and feeds
   - the **kernel branch**: ``num_convs`` 3×3 conv + GN + ReLU, then a 3×3 conv to
     ``E = mask_feature_channels·1·1`` dynamic-kernel weights per cell;
   - the **category branch**: ``num_convs`` 3×3 conv + GN + ReLU, then a 3×3 conv to
     ``num_things`` sigmoid logits (bias at the 0.01 prior). As in SOLOv2 the category branch
     does not see the two CoordConv channels (with ``coords`` it takes the first C channels);
     the ICM's output (C channels) feeds both branches, as DESIGN §3 says.

The **unified mask-feature branch** (SOLOv2 ``MaskFeatHead``) takes P2 … P(1+mask_feature_levels):
level 0 is one 3×3 conv, level j is j × (3×3 conv + ×2 bilinear upsample); the coarsest level gets
two CoordConv channels first; the levels are summed and a 1×1 conv + GN + ReLU gives the ``E``-
channel mask features at stride 4. The internal width is SOLOv2's 128, capped at ``E`` (so the
``shapes-tiny`` preset, E = 64, gets 64). A cell's mask is the **dynamic 1×1 conv** of its kernel
with the mask features, ``m = σ(K · F)``.

**Losses** (Eq. 1): ``L_mask`` = ``dice_weight`` × the mean dice loss over the positive cells of
the batch (SOLOv2's "dice weight 3"); ``L_cate`` = ``focal_weight`` × the sigmoid focal loss
summed over all cells and classes ÷ (num_pos + 1). Targets come from
:func:`cfnet.targets.assign_targets` (centre sampling σ = 0.2, scale ranges).

**Inference** (SOLOv2 ``inference_single_image``, per image): sigmoid scores with SOLOv2's
point-NMS (a cell keeps its score only where it is the 2×2 local maximum) → ``score_thr`` → masks
of the surviving cells at stride 4 (only the image's own extent, not the batch padding) →
``mask_thr`` → **min-area filter** ``area > min_mask_area_ratio × stride`` with the area counted
at stride 4 (ratio 1 is SOLOv2's "area > stride"; 0 keeps every non-empty mask, DESIGN §9) →
**maskness** rescoring ``score × mean(p over the binary mask)`` → top ``nms_pre`` → Matrix NMS
(:func:`cfnet.matrix_nms.matrix_nms`) → ``update_thr`` → top ``max_per_img`` → the kept
probability maps are brought back to the input's own resolution and thresholded at ``mask_thr``.

Init (as SOLOv2): every conv of the towers and predictors N(0, 0.01) with zero bias (so the
kernel-branch output weights start small), the category bias at −log((1 − 0.01)/0.01).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cfnet.config import Config, config_kwargs
from cfnet.losses import dice_loss, sigmoid_focal_loss
from cfnet.matrix_nms import matrix_nms
from cfnet.transform import PanopticTransform

__all__ = [
    "SOLOv2InstanceHead",
    "MaskFeatureBranch",
    "conv_gn_relu",
    "group_norm",
    "coord_features",
    "dynamic_conv",
    "point_nms",
    "SOLOV2_MASK_BRANCH_CHANNELS",
    "PRIOR_PROB",
]

SOLOV2_MASK_BRANCH_CHANNELS = 128
PRIOR_PROB = 0.01
MASK_STRIDE = 4


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with 32 groups, or the largest divisor of ``channels`` below 32 (small widths)."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def conv_gn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Conv (no bias) + GN + ReLU, the building block of SOLOv2's towers and UPSNet's head."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        group_norm(out_channels),
        nn.ReLU(inplace=True),
    )


def coord_features(x: Tensor) -> Tensor:
    """SOLOv2's two CoordConv channels (x then y, ``linspace(-1, 1)``) for a (B, C, H, W) map."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy])[None].expand(b, -1, -1, -1)


def dynamic_conv(kernels: Tensor, mask_features: Tensor) -> Tensor:
    """SOLOv2's dynamic 1×1 conv: kernels (N, E) on mask features (E, H, W) → mask logits (N, H, W)."""
    e, h, w = mask_features.shape
    return (kernels @ mask_features.reshape(e, h * w)).reshape(-1, h, w)


def upsample_masks(
    probs: Tensor,
    mask_thr: float,
    padded_size: tuple[int, int],
    image_size: tuple[int, int],
    original_size: tuple[int, int],
    chunk: int = 8,
) -> Tensor:
    """``PanopticTransform.postprocess_map(probs, ...) > mask_thr``, ``chunk`` maps at a time.

    Bilinear resizing treats every map on its own, so resizing a few at a time and thresholding
    straight into the bool output gives the same masks without ever holding all K maps at full
    resolution in float (K × H × W × 4 bytes, about 430 MB for 100 masks at 800×1333).
    """
    height, width = original_size
    out = torch.empty(probs.shape[0], height, width, dtype=torch.bool, device=probs.device)
    for i in range(0, probs.shape[0], chunk):
        full = PanopticTransform.postprocess_map(probs[i : i + chunk], padded_size, image_size, original_size)
        torch.gt(full, mask_thr, out=out[i : i + chunk])
    return out


def point_nms(scores: Tensor) -> Tensor:
    """SOLOv2's point NMS: keep a cell's score only where it equals the max of its 2×2 window."""
    local_max = F.max_pool2d(scores, kernel_size=2, stride=1, padding=1)[..., :-1, :-1]
    return scores * (local_max == scores)


def _init_normal(module: nn.Module, std: float = 0.01) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class MaskFeatureBranch(nn.Module):
    """SOLOv2's unified mask-feature branch: P2..P(1+L) → E channels at stride 4."""

    def __init__(
        self, in_channels: int, channels: int, out_channels: int, num_levels: int, coords: bool = True
    ) -> None:
        super().__init__()
        if not 1 <= num_levels <= 4:
            raise ValueError(f"model.instance.mask_feature_levels: expected 1..4 (P2..P5), got {num_levels}")
        self.num_levels = num_levels
        # SOLOv2 always adds CoordConv here; ``coords=False`` removes the branch's only explicit
        # position source, for the no-position control of the ablation study.
        self.coords = coords
        self.levels = nn.ModuleList()
        for i in range(num_levels):
            layers: list[nn.Module] = []
            if i == 0:
                layers.append(conv_gn_relu(in_channels, channels))
            for j in range(i):
                coord = 2 if (coords and j == 0 and i == num_levels - 1) else 0
                layers.append(conv_gn_relu((in_channels + coord) if j == 0 else channels, channels))
                layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.levels.append(nn.Sequential(*layers))
        self.predictor = conv_gn_relu(channels, out_channels, kernel_size=1)
        _init_normal(self)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        out = self.levels[0](features[0])
        for i in range(1, self.num_levels):
            x = features[i]
            if self.coords and i == self.num_levels - 1 and i > 0:  # CoordConv at the coarsest level (SOLOv2)
                x = torch.cat([x, coord_features(x)], 1)
            y = self.levels[i](x)
            if y.shape[-2:] != out.shape[-2:]:
                raise ValueError(
                    f"mask-feature branch: level P{i + 2} upsampled to {tuple(y.shape[-2:])} but P2 is "
                    f"{tuple(out.shape[-2:])}; model.input.size_divisibility must be a multiple of "
                    f"{2 ** (i + 2)}"
                )
            out = out + y
        return self.predictor(out)


class SOLOv2InstanceHead(nn.Module):
    """SOLOv2 instance branch with a shared position module (ICM / coords / sine / none).

    ``forward(features)`` takes the FPN ``OrderedDict`` (``p2``..``p6``) and returns
    ``(cate_preds, kernel_preds, mask_features)``: per level ``(B, T, S, S)`` logits and
    ``(B, E, S, S)`` kernels, and ``(B, E, H/4, W/4)`` mask features.

    The keyword arguments are the fields of ``cfg.model.instance`` and ``cfg.model.inference`` of
    the same names (no defaults here: :mod:`cfnet.config` holds them); :meth:`from_config` maps
    them. ``mask_branch_channels`` (not a config key) defaults to min(128, E).
    """

    @classmethod
    def from_config(
        cls, cfg: Config, in_channels: int, num_things: int, position: nn.Module | None = None
    ) -> SOLOv2InstanceHead:
        """The head of ``cfg`` on ``in_channels``-channel features (the backbone's ``out_channels``),
        with the position module ``cfg.model.instance.position`` unless ``position`` is given."""
        if position is None:
            from cfnet.modules import build_position_module

            position = build_position_module(cfg.model.instance.position, in_channels, cfg)
        kwargs = config_kwargs(cls, cfg.model.instance, cfg.model.inference)
        return cls(in_channels, num_things, position, **kwargs)

    def __init__(
        self,
        in_channels: int,
        num_things: int,
        position: nn.Module,
        *,
        num_grids: Sequence[int],
        strides: Sequence[int],
        scale_ranges: Sequence[Sequence[float]],
        sigma: float,
        num_convs: int,
        channels: int,
        mask_feature_channels: int,
        mask_feature_levels: int,
        mask_coords: bool,
        dice_weight: float,
        focal_alpha: float,
        focal_gamma: float,
        focal_weight: float,
        soft_mask_targets: bool,
        min_mask_area_ratio: float,
        score_thr: float,
        update_thr: float,
        mask_thr: float,
        nms_pre: int,
        max_per_img: int,
        nms_kernel: str,
        nms_sigma: float,
        mask_branch_channels: int | None = None,
    ) -> None:
        super().__init__()
        n = len(num_grids)
        if not 1 <= n <= 5 or len(strides) != n or len(scale_ranges) != n:
            raise ValueError(
                "model.instance.num_grids / strides / scale_ranges: need 1..5 levels of equal length, "
                f"got {list(num_grids)}, {list(strides)}, {list(scale_ranges)}"
            )
        for s in strides:
            if s not in (4, 8, 16, 32, 64):
                raise ValueError(f"model.instance.strides: {s} is not an FPN stride (4, 8, 16, 32, 64)")
        if num_convs < 1:
            raise ValueError(f"model.instance.num_convs: expected >= 1, got {num_convs}")
        self.num_things = num_things
        self.num_grids = [int(g) for g in num_grids]
        self.strides = [int(s) for s in strides]
        self.scale_ranges = [tuple(float(v) for v in r) for r in scale_ranges]
        self.sigma = sigma
        self.in_channels = in_channels
        self.kernel_channels = mask_feature_channels  # E = E·1·1 for the 1×1 dynamic conv
        self.dice_weight = dice_weight
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.focal_weight = focal_weight
        self.soft_mask_targets = soft_mask_targets
        self.min_mask_area_ratio = min_mask_area_ratio
        self.score_thr = score_thr
        self.update_thr = update_thr
        self.mask_thr = mask_thr
        self.nms_pre = nms_pre
        self.max_per_img = max_per_img
        self.nms_kernel = nms_kernel
        self.nms_sigma = nms_sigma

        self.position = position  # shared by all levels (Fig. 2)
        pos_channels = getattr(position, "out_channels", None) or in_channels
        # With CoordConv the category branch drops the two coordinate channels (SOLOv2).
        self.cate_in_channels = in_channels if pos_channels == in_channels + 2 else pos_channels
        self.kernel_tower = nn.Sequential(
            *[conv_gn_relu(pos_channels if i == 0 else channels, channels) for i in range(num_convs)]
        )
        self.cate_tower = nn.Sequential(
            *[conv_gn_relu(self.cate_in_channels if i == 0 else channels, channels) for i in range(num_convs)]
        )
        self.kernel_pred = nn.Conv2d(channels, self.kernel_channels, 3, padding=1)
        self.cate_pred = nn.Conv2d(channels, num_things, 3, padding=1)
        for m in (self.kernel_tower, self.cate_tower, self.kernel_pred, self.cate_pred):
            _init_normal(m)
        nn.init.constant_(self.cate_pred.bias, -math.log((1 - PRIOR_PROB) / PRIOR_PROB))

        if mask_branch_channels is None:
            mask_branch_channels = min(SOLOV2_MASK_BRANCH_CHANNELS, mask_feature_channels)
        self.mask_branch = MaskFeatureBranch(
            in_channels, mask_branch_channels, mask_feature_channels, mask_feature_levels, mask_coords
        )

    # ------------------------------------------------------------------------------------------
    def level_features(self, features: Mapping[str, Tensor]) -> list[Tensor]:
        """SOLOv2's ``split_feats``: level i is P(i+2), resized to the map of its configured stride."""
        keys = list(features.keys())
        by_stride = {4 * 2**k: features[key] for k, key in enumerate(keys)}
        out = []
        for i, stride in enumerate(self.strides):
            x = features[keys[i]]
            native = 4 * 2**i
            if stride != native:
                ref = by_stride.get(stride)
                size = ref.shape[-2:] if ref is not None else None
                scale = None if size is not None else native / stride
                x = F.interpolate(x, size=size, scale_factor=scale, mode="bilinear", align_corners=False)
            out.append(x)
        return out

    def forward(self, features: Mapping[str, Tensor]) -> tuple[list[Tensor], list[Tensor], Tensor]:
        feats = list(features.values())
        cate_preds, kernel_preds = [], []
        for x, grid in zip(self.level_features(features), self.num_grids):
            x = self.position(x)
            x = F.interpolate(x, size=(grid, grid), mode="bilinear", align_corners=False)
            cate_preds.append(self.cate_pred(self.cate_tower(x[:, : self.cate_in_channels])))
            kernel_preds.append(self.kernel_pred(self.kernel_tower(x)))
        mask_features = self.mask_branch(feats[: self.mask_branch.num_levels])
        return cate_preds, kernel_preds, mask_features

    # ------------------------------------------------------------------------------------------
    def losses(
        self,
        cate_preds: Sequence[Tensor],
        kernel_preds: Sequence[Tensor],
        mask_features: Tensor,
        targets: Sequence[Mapping[str, Tensor]],
    ) -> dict[str, Tensor]:
        """``loss_mask`` and ``loss_cate`` of Eq. 1 (SOLOv2's dice and focal losses).

        ``targets[b]`` holds ``masks`` (K, Hp, Wp) bool at the padded input resolution and
        ``labels`` (K,) contiguous thing ids.
        """
        from cfnet.targets import assign_targets  # only training needs it

        mask_size = tuple(mask_features.shape[-2:])
        mask_logits, mask_targets, cate_labels = [], [], []
        for b, target in enumerate(targets):
            levels = assign_targets(
                target["masks"],
                target["labels"],
                num_things=self.num_things,
                num_grids=self.num_grids,
                scale_ranges=self.scale_ranges,
                sigma=self.sigma,
                mask_size=mask_size,
                soft_mask_targets=self.soft_mask_targets,
            )
            for lvl, t in enumerate(levels):
                cate_labels.append((lvl, b, t.labels.reshape(-1)))
                if t.positive_index.numel():
                    kernels = kernel_preds[lvl][b].flatten(1)[:, t.positive_index].T  # (P, E)
                    mask_logits.append(dynamic_conv(kernels, mask_features[b]))
                    mask_targets.append(t.mask_targets)
        num_pos = sum(m.shape[0] for m in mask_logits)
        if num_pos:
            # float32: under CUDA autocast the sums over H·W would overflow fp16 / lose bf16 precision
            probs = torch.cat(mask_logits).float().sigmoid()
            dice = dice_loss(probs, torch.cat(mask_targets).to(probs))
            loss_mask = dice.mean() * self.dice_weight
        else:  # keep every head parameter in the graph (DDP) with a zero loss
            loss_mask = mask_features.sum() * 0 + sum(k.sum() for k in kernel_preds) * 0
        # Flatten logits and labels in the same (level, image, cell) order.
        logits = torch.cat(
            [cate_preds[lvl][b].permute(1, 2, 0).reshape(-1, self.num_things) for lvl, b, _ in cate_labels]
        )
        labels = torch.cat([lab for _, _, lab in cate_labels]).to(logits.device)
        loss_cate = sigmoid_focal_loss(logits.float(), labels, self.focal_alpha, self.focal_gamma) / (
            num_pos + 1
        )
        return {"loss_mask": loss_mask, "loss_cate": loss_cate * self.focal_weight}

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(
        self,
        cate_preds: Sequence[Tensor],
        kernel_preds: Sequence[Tensor],
        mask_features: Tensor,
        index: int,
        image_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> dict[str, Tensor]:
        """Instances of image ``index`` of the batch at its ``original_size`` (see module docstring).

        Returns ``masks`` (K, H, W) bool, ``labels`` (K,) long (contiguous thing ids), ``scores``
        (K,) float, sorted by score.
        """
        device = mask_features.device
        scores = torch.cat(
            [
                point_nms(c[index : index + 1].float().sigmoid())[0]
                .permute(1, 2, 0)
                .reshape(-1, self.num_things)
                for c in cate_preds
            ]
        )
        kernels = torch.cat(
            [k[index].permute(1, 2, 0).reshape(-1, self.kernel_channels) for k in kernel_preds]
        )
        cell_strides = torch.cat(
            [torch.full((g * g,), float(s), device=device) for g, s in zip(self.num_grids, self.strides)]
        )
        height, width = original_size
        empty = {
            "masks": torch.zeros(0, height, width, dtype=torch.bool, device=device),
            "labels": torch.zeros(0, dtype=torch.long, device=device),
            "scores": torch.zeros(0, device=device),
        }
        cells, labels = torch.nonzero(scores > self.score_thr, as_tuple=True)
        if cells.numel() == 0:
            return empty
        cate_scores = scores[cells, labels]
        # Masks only over the image's own extent at stride 4 (not the batch padding).
        hc, wc = -(-image_size[0] // MASK_STRIDE), -(-image_size[1] // MASK_STRIDE)
        feats = mask_features[index][:, :hc, :wc]
        probs = dynamic_conv(kernels[cells], feats).float().sigmoid_()
        masks = probs > self.mask_thr
        area = masks.sum((1, 2)).float()
        keep = area > self.min_mask_area_ratio * cell_strides[cells]
        if not keep.any():
            return empty
        # The (N, h, w) float maps are the big tensors here: they are copied only when the area
        # filter drops some, and after the NMS only the kept ones are gathered (by index). Every
        # value is computed by the same operation on a tensor of the same shape as before, so the
        # results are bit-identical (a reduction's order may depend on its shape).
        if not bool(keep.all()):
            probs, masks, area = probs[keep], masks[keep], area[keep]
            cate_scores, labels = cate_scores[keep], labels[keep]
        maskness = (probs * masks).sum((1, 2)) / area
        cate_scores = cate_scores * maskness
        order = torch.argsort(cate_scores, descending=True)[: self.nms_pre]
        masks, area = masks[order], area[order]
        cate_scores, labels = cate_scores[order], labels[order]
        cate_scores = matrix_nms(
            masks, labels, cate_scores, kernel=self.nms_kernel, sigma=self.nms_sigma, mask_area=area
        )
        del masks
        keep = cate_scores >= self.update_thr
        if not keep.any():
            return empty
        order, cate_scores, labels = order[keep], cate_scores[keep], labels[keep]
        final = torch.argsort(cate_scores, descending=True)[: self.max_per_img]
        order, cate_scores, labels = order[final], cate_scores[final], labels[final]
        probs = probs[order]
        padded = (hc * MASK_STRIDE, wc * MASK_STRIDE)
        return {
            "masks": upsample_masks(probs, self.mask_thr, padded, image_size, original_size),
            "labels": labels,
            "scores": cate_scores,
        }
