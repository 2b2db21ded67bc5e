"""Input/output transform of the model, after torchvision's ``GeneralizedRCNNTransform``.

``PanopticTransform`` turns a list of ``3×H×W`` RGB images in [0, 1] (any sizes) into one padded,
normalised batch, and maps per-image outputs back to each input's own resolution:

1. **normalise** with ``cfg.model.input.pixel_mean/std`` (given on the [0, 1] RGB scale);
2. **resize** — at evaluation only: the shorter side to ``min_size_test`` with the longer side
   at most ``max_size_test`` (one scale factor per image, bilinear, as torchvision and
   detectron2's ``ResizeShortestEdge``). In training mode the data pipeline has already resized
   (multi-scale ``min_size_train``, crops), so images and targets keep their size. When the
   transform does resize and targets are given, instance masks and ``sem_seg`` are resized with
   nearest-neighbour sampling so they stay aligned;
3. **pad** every image at the bottom/right to a common size divisible by
   ``size_divisibility`` (32: the stride of P5). Images pad with 0 *after* normalisation (the
   mean colour), instance masks with ``False``, ``sem_seg`` with the ignore index 255, so the
   padding contributes no loss.

``postprocess_map`` undoes 3 and 2 for a dense prediction map at any stride: upsample to the padded
size, crop the image's own ``(h, w)``, resize to the original ``(H, W)`` — AdelaiDet's SOLOv2
does the same for its masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cfnet.categories import IGNORE_INDEX

__all__ = ["ImageBatch", "PanopticTransform", "resized_size"]


@dataclass
class ImageBatch:
    """A padded batch: ``tensors`` (B, 3, Hp, Wp) and each image's ``(h, w)`` before padding."""

    tensors: Tensor
    image_sizes: list[tuple[int, int]]


def resized_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """Output size of a shortest-edge resize: shorter side ``min_size``, longer side ``≤ max_size``."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def check_images(images: Sequence[Tensor], targets: Sequence[dict] | None = None) -> None:
    """Raise unless ``images`` is a non-empty list of 3×H×W float tensors (and ``targets`` as long)."""
    if len(images) == 0:
        raise ValueError("model input: expected a non-empty list of 3xHxW images")
    if targets is not None and len(targets) != len(images):
        raise ValueError(f"model input: {len(images)} images but {len(targets)} targets")
    for i, image in enumerate(images):
        if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"model input: image {i} must be a 3xHxW float tensor, got {shape}")
        if not image.is_floating_point():
            raise ValueError(f"model input: image {i} must be float RGB in [0, 1], got {image.dtype}")


class PanopticTransform(nn.Module):
    """Normalise, resize (eval only), pad; and map outputs back (see the module docstring)."""

    def __init__(
        self,
        min_size: int,
        max_size: int,
        size_divisibility: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ) -> None:
        super().__init__()
        if min_size < 1 or max_size < min_size:
            raise ValueError(
                f"model.input: need 1 <= min_size_test <= max_size_test, got {min_size}, {max_size}"
            )
        if size_divisibility < 1:
            raise ValueError(f"model.input.size_divisibility: expected >= 1, got {size_divisibility}")
        if len(pixel_mean) != 3 or len(pixel_std) != 3 or min(pixel_std) <= 0:
            raise ValueError(
                f"model.input.pixel_mean/pixel_std: expected 3 values each (std > 0), "
                f"got {list(pixel_mean)}, {list(pixel_std)}"
            )
        self.min_size = min_size
        self.max_size = max_size
        self.size_divisibility = size_divisibility
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(3, 1, 1), persistent=False)

    def extra_repr(self) -> str:
        return (
            f"min_size={self.min_size}, max_size={self.max_size}, size_divisibility={self.size_divisibility}"
        )

    # ------------------------------------------------------------------------------------------
    def normalize(self, image: Tensor) -> Tensor:
        return (image - self.pixel_mean) / self.pixel_std

    def resize(self, image: Tensor, target: dict | None = None) -> tuple[Tensor, dict | None]:
        h, w = image.shape[-2:]
        size = resized_size(h, w, self.min_size, self.max_size)
        if size != (h, w):
            image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
            if target is not None:
                target = dict(target)
                if "masks" in target:
                    m = target["masks"]
                    target["masks"] = F.interpolate(m[None].float(), size=size, mode="nearest")[0] > 0.5
                if "sem_seg" in target:
                    s = target["sem_seg"]
                    target["sem_seg"] = F.interpolate(s[None, None].float(), size=size, mode="nearest")[
                        0, 0
                    ].to(s.dtype)
        return image, target

    def padded_size(self, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
        d = self.size_divisibility
        hp = max(h for h, _ in sizes)
        wp = max(w for _, w in sizes)
        return int(math.ceil(hp / d) * d), int(math.ceil(wp / d) * d)

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[dict] | None = None
    ) -> tuple[ImageBatch, list[dict] | None]:
        """Batch ``images`` (list of 3×H×W in [0, 1]); targets (if any) are padded alike.

        The inputs are checked by the caller (:func:`check_images`, at :class:`cfnet.model.CFNet`'s
        boundary)."""
        out_images: list[Tensor] = []
        out_targets: list[dict] = []
        for i, image in enumerate(images):
            target = targets[i] if targets is not None else None
            image = self.normalize(image.to(self.pixel_mean.device))
            if not self.training:
                image, target = self.resize(image, target)
            out_images.append(image)
            if target is not None:
                out_targets.append(target)
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in out_images]
        hp, wp = self.padded_size(sizes)
        batch = out_images[0].new_zeros(len(out_images), 3, hp, wp)
        for b, im in enumerate(out_images):
            batch[b, :, : im.shape[-2], : im.shape[-1]].copy_(im)
        if targets is None:
            return ImageBatch(batch, sizes), None
        return ImageBatch(batch, sizes), [self.pad_target(t, (hp, wp)) for t in out_targets]

    @staticmethod
    def pad_target(target: dict, size: tuple[int, int]) -> dict:
        """Pad ``masks`` with False and ``sem_seg`` with 255 to ``size`` (bottom/right)."""
        hp, wp = size
        target = dict(target)
        if "masks" in target:
            m = target["masks"].bool()
            target["masks"] = F.pad(m, (0, wp - m.shape[-1], 0, hp - m.shape[-2]), value=False)
        if "sem_seg" in target:
            s = target["sem_seg"].long()
            target["sem_seg"] = F.pad(s, (0, wp - s.shape[-1], 0, hp - s.shape[-2]), value=IGNORE_INDEX)
        return target

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def postprocess_map(
        x: Tensor,
        padded_size: tuple[int, int],
        image_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> Tensor:
        """Map a dense (C, h', w') prediction of one image back to its original resolution.

        ``x`` covers the whole padded batch extent ``padded_size`` at some stride; it is upsampled
        bilinearly to ``padded_size``, cropped to the image's resized ``image_size`` and resized to
        ``original_size``. Returns (C, H, W).
        """
        hp, wp = padded_size
        h, w = image_size
        if tuple(x.shape[-2:]) != (hp, wp):
            sy, sx = hp // x.shape[-2], wp // x.shape[-1]
            if sy * x.shape[-2] != hp or sx * x.shape[-1] != wp:
                raise ValueError(
                    f"postprocess_map: map {tuple(x.shape[-2:])} is not a stride of {padded_size}"
                )
            # Upsampling only the rows/columns the crop needs (one extra for the bilinear
            # neighbour) gives exactly the full upsample-then-crop, at a fraction of the cost.
            rows = min(x.shape[-2], -(-h // sy) + 1)
            cols = min(x.shape[-1], -(-w // sx) + 1)
            x = x[None, :, :rows, :cols]
            if _is_pow2(sy) and _is_pow2(sx):
                # Straight to the (h, w) crop, contiguous: with the scale passed explicitly the
                # kernel samples at 1/s (exact for a power of two, the same float as in/out), so
                # every output pixel equals the upsample-then-crop one, without the padded columns
                # and the strided view that made the softmax after it slow.
                x = torch.ops.aten.upsample_bilinear2d(x, [h, w], False, float(sy), float(sx))[0]
            else:
                x = F.interpolate(x, size=(rows * sy, cols * sx), mode="bilinear", align_corners=False)[0]
        x = x[:, :h, :w]
        if (h, w) != tuple(original_size):
            x = F.interpolate(x[None], size=tuple(original_size), mode="bilinear", align_corners=False)[0]
        return x


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0
