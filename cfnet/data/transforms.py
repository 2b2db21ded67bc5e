"""Joint transforms of an image and its panoptic training target.

Every transform is a callable ``(image, target) -> (image, target)``: ``image`` a float (3, H, W)
tensor, ``target`` the dict of :class:`cfnet.data.PanopticDataset` — ``masks`` (K, H, W) bool and
``labels`` (K,), ``crowd_masks`` (C, H, W) / ``crowd_labels`` (C,) and ``sem_seg`` (H, W) int64
(any of them may be absent). Image, masks and ``sem_seg`` always move together.

Resizing uses bilinear interpolation for the image and nearest-neighbour for every label map. The
nearest-neighbour lookup is the pixel-centre rule (``src = floor((dst + 0.5) · in / out)``, torch's
``nearest-exact``), which is the rule bilinear ``align_corners=False`` uses for pixel centres too,
so labels stay on the image content they belong to. Masks are resized by the same index gather as
``sem_seg`` (no float copies of K full-size masks).

Order for training (as the paper: multi-scale resize, random crop, horizontal flip):
:class:`ResizeShortestEdge` (a random choice of ``data.min_size_train``, capped by
``data.max_size_train``), :class:`RandomCrop` (``data.crop_size``; instances that vanish are
dropped), :class:`RandomHorizontalFlip` (``data.flip_prob``). At test time: resize to
``model.input.min_size_test`` capped by ``max_size_test``. ``height``/``width`` in the target stay
the original size, so predictions can be mapped back.

Randomness comes from torch's RNG (an explicit ``generator`` may be passed), so DataLoader workers,
which torch seeds one by one, draw different augmentations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, dict], tuple[torch.Tensor, dict]]

# (mask key, label key) pairs moved together; an emptied mask drops its label
_MASK_KEYS = (("masks", "labels"), ("crowd_masks", "crowd_labels"))


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def _nearest_index(in_len: int, out_len: int) -> torch.Tensor:
    # pixel-centre nearest neighbour (torch "nearest-exact", PIL NEAREST)
    idx = ((torch.arange(out_len, dtype=torch.float64) + 0.5) * (in_len / out_len)).floor().long()
    return idx.clamp_(0, in_len - 1)


def resize(image: torch.Tensor, target: dict, size: tuple[int, int]) -> tuple[torch.Tensor, dict]:
    """Resize to ``size = (h, w)``: bilinear image, nearest-neighbour masks and ``sem_seg``."""
    h, w = image.shape[-2:]
    nh, nw = int(size[0]), int(size[1])
    if (nh, nw) == (h, w):
        return image, target
    antialias = nh < h or nw < w  # only matters (and only costs) when shrinking
    image = F.interpolate(
        image[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=antialias
    )[0]
    rows, cols = _nearest_index(h, nh), _nearest_index(w, nw)
    target = dict(target)
    if "sem_seg" in target:
        target["sem_seg"] = target["sem_seg"][rows][:, cols]
    for mk, _ in _MASK_KEYS:
        if mk in target:
            target[mk] = target[mk][:, rows][:, :, cols]
    return image, target


def shortest_edge_size(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge rule: shorter side -> ``short``, longer side <= ``max_size``."""
    scale = short / min(h, w)
    nh, nw = h * scale, w * scale
    if max(nh, nw) > max_size:
        scale = max_size / max(nh, nw)
        nh, nw = nh * scale, nw * scale
    return int(nh + 0.5), int(nw + 0.5)


class ResizeShortestEdge:
    """Resize so the shorter side is a random choice of ``min_sizes``, the longer at most ``max_size``."""

    def __init__(
        self, min_sizes: int | Sequence[int], max_size: int, generator: torch.Generator | None = None
    ):
        self.min_sizes = [int(min_sizes)] if isinstance(min_sizes, int) else [int(s) for s in min_sizes]
        if not self.min_sizes or min(self.min_sizes) <= 0:
            raise ValueError(f"ResizeShortestEdge: min_sizes must be positive integers, got {min_sizes}")
        if max_size <= 0:
            raise ValueError(f"ResizeShortestEdge: max_size must be positive, got {max_size}")
        self.max_size = int(max_size)
        self.generator = generator

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        k = 0
        if len(self.min_sizes) > 1:
            k = int(torch.randint(len(self.min_sizes), (1,), generator=self.generator))
        h, w = image.shape[-2:]
        return resize(image, target, shortest_edge_size(h, w, self.min_sizes[k], self.max_size))

    def __repr__(self) -> str:
        return f"ResizeShortestEdge(min_sizes={self.min_sizes}, max_size={self.max_size})"


def crop(
    image: torch.Tensor, target: dict, top: int, left: int, height: int, width: int
) -> tuple[torch.Tensor, dict]:
    """Cut the window ``[top, top+height) x [left, left+width)``; instances left empty are dropped."""
    image = image[:, top : top + height, left : left + width]
    target = dict(target)
    if "sem_seg" in target:
        target["sem_seg"] = target["sem_seg"][top : top + height, left : left + width]
    for mk, lk in _MASK_KEYS:
        if mk in target:
            m = target[mk][:, top : top + height, left : left + width]
            keep = m.flatten(1).any(1)
            target[mk] = m[keep]
            if lk in target:
                target[lk] = target[lk][keep]
    return image, target


class RandomCrop:
    """A random ``crop_size = (h, w)`` window (the whole side where the image is smaller)."""

    def __init__(self, crop_size: Sequence[int], generator: torch.Generator | None = None):
        if len(crop_size) != 2 or min(crop_size) <= 0:
            raise ValueError(f"RandomCrop: crop_size must be [h, w] with positive entries, got {crop_size}")
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.generator = generator

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        h, w = image.shape[-2:]
        ch, cw = min(self.crop_size[0], h), min(self.crop_size[1], w)
        top = int(torch.randint(h - ch + 1, (1,), generator=self.generator))
        left = int(torch.randint(w - cw + 1, (1,), generator=self.generator))
        return crop(image, target, top, left, ch, cw)

    def __repr__(self) -> str:
        return f"RandomCrop(crop_size={list(self.crop_size)})"


def hflip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """Mirror left <-> right."""
    target = dict(target)
    if "sem_seg" in target:
        target["sem_seg"] = target["sem_seg"].flip(-1)
    for mk, _ in _MASK_KEYS:
        if mk in target:
            target[mk] = target[mk].flip(-1)
    return image.flip(-1), target


class RandomHorizontalFlip:
    """Mirror with probability ``prob``."""

    def __init__(self, prob: float = 0.5, generator: torch.Generator | None = None):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: prob must lie in [0, 1], got {prob}")
        self.prob = float(prob)
        self.generator = generator

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        if self.prob > 0 and float(torch.rand((), generator=self.generator)) < self.prob:
            return hflip(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(prob={self.prob})"


def build_transforms(cfg, train: bool) -> Compose:
    """The transforms of a :class:`cfnet.config.Config` (``cfg.data`` for training, ``cfg.model.input``
    for testing)."""
    if train:
        d = cfg.data
        ts: list[Transform] = [ResizeShortestEdge(d.min_size_train, d.max_size_train)]
        if d.crop_size is not None:
            ts.append(RandomCrop(d.crop_size))
        if d.flip_prob > 0:
            ts.append(RandomHorizontalFlip(d.flip_prob))
        return Compose(ts)
    i = cfg.model.input
    return Compose([ResizeShortestEdge([i.min_size_test], i.max_size_test)])
