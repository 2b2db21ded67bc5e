"""CFNet (paper §3.1, Fig. 2): backbone + instance branch with ICM + semantic branch with SCM +
panoptic post-processing, composed like torchvision's detection models::

    transform  (cfnet.transform.PanopticTransform)   normalise, resize (eval), pad
    backbone   (cfnet.backbone.BACKBONES)            ResNet (or another family) + FPN → P2..P6
    instance_head (cfnet.heads.SOLOv2InstanceHead)   ICM (shared) + SOLOv2 on P2..P6
    semantic_head (cfnet.heads.SemanticHead)         SCM (shared) + UPSNet-style head on P2..P5
    post-processing                                  Matrix NMS (in the instance head), then the
                                                     heuristic fusion of Kirillov et al.

``model(images, targets=None)``:

- ``images``: list of ``3×H×W`` float RGB tensors in [0, 1], any sizes.
- training: ``targets[i]`` holds ``masks`` (K×H×W bool), ``labels`` (K,) contiguous thing ids
  and ``sem_seg`` (H×W int64, 255 = ignore) at the image's resolution; returns the losses of
  Eq. 1 ``{"loss_mask", "loss_cate", "loss_sem"}`` (``loss_sem`` already multiplied by λ).
- eval: one dict per image, at that image's own resolution: ``panoptic_seg`` (H×W int64, 0 =
  void), ``segments_info`` (``[{id, category_id, isthing, score, area}]`` with the dataset's
  category ids), ``sem_seg`` (num_classes×H×W softmax probabilities) and ``instances``
  (``masks`` K×H×W bool, ``labels`` contiguous, ``scores``).

Model code never imports the data or engine packages.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cfnet.backbone import build_backbone
from cfnet.categories import IGNORE_INDEX, Categories
from cfnet.config import Config, ConfigError, validate
from cfnet.heads import SemanticHead, SOLOv2InstanceHead, build_instance_head, build_semantic_head
from cfnet.padding import set_padding_mode
from cfnet.panoptic_fusion import panoptic_fusion
from cfnet.transform import ImageBatch, PanopticTransform, check_images

__all__ = ["CFNet", "build_model", "build_transform"]


class CFNet(nn.Module):
    """One-stage panoptic segmentation network of the paper (see the module docstring)."""

    def __init__(
        self,
        backbone: nn.Module,
        instance_head: SOLOv2InstanceHead,
        semantic_head: SemanticHead,
        transform: PanopticTransform,
        *,
        categories: Categories,
        cfg: Config,
    ) -> None:
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.instance_head = instance_head
        self.semantic_head = semantic_head
        self.categories = categories
        self.cfg = cfg
        self.sem_loss_weight = cfg.model.semantic.loss_weight  # λ of Eq. 1

    # ---------------------------------------------------------------- pieces the demo/notebooks use
    def preprocess(self, images: Sequence[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        """Normalised, (eval: resized,) padded batch ``(B, 3, Hp, Wp)`` and each image's size in it."""
        check_images(images)
        batch, _ = self.transform(images)
        return batch.tensors, batch.image_sizes

    def features(self, batch: Tensor) -> OrderedDict[str, Tensor]:
        """FPN outputs ``p2..p6`` of a preprocessed batch (before the SCM / ICM)."""
        return self.backbone(batch)

    # ---------------------------------------------------------------- forward
    def forward(self, images: Sequence[Tensor], targets: Sequence[dict] | None = None):
        # The model's boundary: inputs are checked here once; the pieces behind it trust them.
        check_images(images, targets if self.training else None)
        if self.training:
            if targets is None:
                raise ValueError("CFNet in training mode needs targets (masks, labels, sem_seg per image)")
            self._check_targets(images, targets)
            device = self.transform.pixel_mean.device
            targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
            batch, padded_targets = self.transform(images, targets)
            return self._losses(batch, padded_targets)
        with torch.no_grad():
            original_sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
            batch, _ = self.transform(images)
            features = self.features(batch.tensors)
            sem_logits = self.semantic_head(features)
            instance_out = self.instance_head(features)
            return self.postprocess(sem_logits, instance_out, batch, original_sizes)

    def _losses(self, batch: ImageBatch, targets: list[dict]) -> dict[str, Tensor]:
        features = self.features(batch.tensors)
        sem_logits = self.semantic_head(features)
        cate_preds, kernel_preds, mask_features = self.instance_head(features)
        losses = self.instance_head.losses(cate_preds, kernel_preds, mask_features, targets)
        sem_targets = torch.stack([t["sem_seg"] for t in targets]).to(sem_logits.device)
        losses["loss_sem"] = self.semantic_head.loss(sem_logits, sem_targets) * self.sem_loss_weight
        return losses

    def postprocess(
        self,
        sem_logits: Tensor,
        instance_out: tuple[list[Tensor], list[Tensor], Tensor],
        batch: ImageBatch,
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[dict]:
        """Per image: semantic probabilities, instances, and their panoptic fusion at input size."""
        cate_preds, kernel_preds, mask_features = instance_out
        padded = tuple(batch.tensors.shape[-2:])
        inf = self.cfg.model.inference
        results = []
        for b, (image_size, original) in enumerate(zip(batch.image_sizes, original_sizes)):
            logits = PanopticTransform.postprocess_map(sem_logits[b].float(), padded, image_size, original)
            probs = logits.softmax(0)
            # max(0) gives the argmax (the first maximal index, like argmax) and the winning
            # probability that the fusion's stuff scores need, in one pass over the C×H×W map
            semantic_score, semantic = probs.max(0)
            instances = self.instance_head.predict(
                cate_preds, kernel_preds, mask_features, b, image_size, original
            )
            panoptic, segments = panoptic_fusion(
                instances["masks"],
                instances["labels"],
                instances["scores"],
                semantic,
                num_things=self.categories.num_things,
                overlap_thr=inf.overlap_thr,
                stuff_area=inf.stuff_area,
                semantic_probs=probs,
                semantic_score=semantic_score,
            )
            segments_info = [
                {
                    "id": int(s["id"]),
                    "category_id": self.categories.category_id(int(s["label"])),
                    "isthing": bool(s["isthing"]),
                    "score": float(s["score"]),
                    "area": int(s["area"]),
                }
                for s in segments
            ]
            results.append(
                {
                    "panoptic_seg": panoptic,
                    "segments_info": segments_info,
                    "sem_seg": probs,
                    "instances": instances,
                }
            )
        return results

    # ---------------------------------------------------------------- input checks
    def _check_targets(self, images: Sequence[Tensor], targets: Sequence[dict]) -> None:
        num_things = self.categories.num_things
        for i, (image, t) in enumerate(zip(images, targets)):
            for key in ("masks", "labels", "sem_seg"):
                if key not in t:
                    raise ValueError(f"target {i}: missing {key!r} (need masks, labels, sem_seg)")
            size = tuple(image.shape[-2:])
            masks, labels, sem = t["masks"], t["labels"], t["sem_seg"]
            if masks.dim() != 3 or tuple(masks.shape[-2:]) != size:
                raise ValueError(
                    f"target {i}: masks must be (K, {size[0]}, {size[1]}), got {tuple(masks.shape)}"
                )
            if labels.shape != (masks.shape[0],):
                raise ValueError(
                    f"target {i}: labels must be ({masks.shape[0]},) like masks, got {tuple(labels.shape)}"
                )
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_things):
                raise ValueError(
                    f"target {i}: labels must be contiguous thing ids in [0, {num_things}), "
                    f"got range [{int(labels.min())}, {int(labels.max())}]"
                )
            if tuple(sem.shape) != size:
                raise ValueError(f"target {i}: sem_seg must be {size}, got {tuple(sem.shape)}")
            bad = (sem != IGNORE_INDEX) & ((sem < 0) | (sem >= self.categories.num_classes))
            if bool(bad.any()):
                raise ValueError(
                    f"target {i}: sem_seg holds ids outside [0, {self.categories.num_classes}) "
                    f"that are not {IGNORE_INDEX}"
                )


def build_transform(cfg: Config) -> PanopticTransform:
    i = cfg.model.input
    return PanopticTransform(i.min_size_test, i.max_size_test, i.size_divisibility, i.pixel_mean, i.pixel_std)


def build_model(cfg: Config, categories: Categories | Sequence[dict] | str | None = None) -> CFNet:
    """CFNet for a (validated) config.

    ``categories`` defaults to ``Categories.from_spec(cfg.model.categories)``; a checkpoint passes
    the records it was trained with.
    """
    validate(cfg)
    if categories is None:
        categories = Categories.from_spec(cfg.model.categories)
    elif not isinstance(categories, Categories):
        categories = Categories.from_spec(categories)
    if categories.num_things < 1:
        raise ConfigError(f"model.categories {cfg.model.categories!r}: needs at least one thing category")
    levels = cfg.model.instance.mask_feature_levels
    div = cfg.model.input.size_divisibility
    if div % (2 ** (levels + 1)) or div % 32:
        raise ConfigError(
            f"config key 'model.input.size_divisibility': {div} must be a multiple of 32 "
            "(the stride of P5), so that the FPN levels halve exactly"
        )
    backbone = build_backbone(cfg)
    # The heads size themselves from what the backbone gives, whatever its family.
    instance_head = build_instance_head(cfg, categories.num_things, backbone.out_channels)
    semantic_head = build_semantic_head(cfg, categories.num_classes, backbone.out_channels)
    transform = build_transform(cfg)
    model = CFNet(backbone, instance_head, semantic_head, transform, categories=categories, cfg=cfg)
    return set_padding_mode(model, cfg.model.padding)
