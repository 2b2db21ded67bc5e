"""How the network pads its borders: ``model.padding`` (``zeros``, the default, or ``circular``).

Zero padding tells a convolutional network where the image border is, and a network whose
receptive field covers the image can turn that into absolute position (Islam et al., "How much
position information do convolutional neural networks encode?", ICLR 2020). On small images
this makes every explicit position module look unnecessary: the ablation study's control with no
position module and no CoordConv still separated touching identical instances at 128 px.

``circular`` pads every convolution and max-pool by wrapping the map around, and makes bilinear
``nn.Upsample`` layers interpolate across the wrap instead of clamping at the edge, so nothing
marks a border: a network built only of such layers is equivariant to circular shifts of its input
by multiples of its largest stride, and absolute position can only come from what is built to
provide it (CoordConv channels, the ICM's coordinates, sine embeddings). The FPN levels and the
mask features are exactly equivariant (tests/test_padding.py); the resizes to the category grid
and the semantic head's upsampling still clamp, but only near the border. It changes no weight,
so a checkpoint's weights load either way. Deformable convolutions (torchvision's
``DeformConv2d``) pad with zeros only and are refused.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

PADDING_MODES = ("zeros", "circular")


class CircularUpsample(nn.Module):
    """``nn.Upsample`` by an integer factor, interpolating across the wrap-around of the map.

    Pads one cell circularly, upsamples, and crops ``scale`` cells from each side: the interior
    is exactly the plain upsampling's; the outermost cells blend with the opposite border
    instead of repeating their own value, which would mark the border.
    """

    def __init__(self, scale: int, mode: str = "bilinear"):
        super().__init__()
        self.scale, self.mode = scale, mode

    def forward(self, x: Tensor) -> Tensor:
        s = self.scale
        y = F.interpolate(F.pad(x, (1, 1, 1, 1), mode="circular"), scale_factor=s, mode=self.mode,
                          align_corners=False)  # fmt: skip
        return y[..., s:-s, s:-s]


def set_padding_mode(module: nn.Module, mode: str) -> nn.Module:
    """Make every padded convolution and max-pool in ``module`` pad with ``mode``, in place.

    ``zeros`` leaves the module as built. Returns ``module``.
    """
    if mode not in PADDING_MODES:
        raise ValueError(f"padding mode {mode!r} is not one of {', '.join(PADDING_MODES)}")
    if mode == "zeros":
        return module
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d) and any(p > 0 for p in _pair(child.padding)):
                # Conv2d pads by its padding_mode in forward; the amounts were fixed at construction.
                child.padding_mode = mode
            elif isinstance(child, nn.MaxPool2d) and any(p > 0 for p in _pair(child.padding)):
                pad_h, pad_w = _pair(child.padding)
                pool = nn.MaxPool2d(child.kernel_size, child.stride, 0, child.dilation, child.return_indices,
                                    child.ceil_mode)  # fmt: skip
                setattr(parent, name, nn.Sequential(nn.CircularPad2d((pad_w, pad_w, pad_h, pad_h)), pool))
            elif isinstance(child, nn.Upsample) and child.mode in ("bilinear", "bicubic"):
                scale = child.scale_factor
                if child.size is not None or not float(scale).is_integer() or child.align_corners:
                    raise ValueError(f"{name}: only integer-factor upsampling without align_corners wraps")
                setattr(parent, name, CircularUpsample(int(scale), child.mode))
            elif type(child).__name__ == "DeformConv2d":
                raise ValueError(
                    f"{name}: deformable convolutions pad with zeros only; "
                    "use model.backbone.dcn=false with model.padding=circular"
                )
    return module


def _pair(value: int | tuple[int, ...] | str) -> tuple[int, int]:
    if isinstance(value, str):  # "same" / "valid": "same" pads, but its amount is decided at run time
        raise ValueError(f"padding={value!r} is not supported by set_padding_mode")
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
