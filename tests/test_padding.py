"""``model.padding=circular``: no border cue, so the network is equivariant to circular shifts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cfnet.config import ConfigError, get_config
from cfnet.model import build_model
from cfnet.padding import CircularUpsample, set_padding_mode

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NO_POSITION = ["model.instance.position=none", "model.instance.mask_coords=false"]


def _model(padding: str, extra=()) -> nn.Module:
    torch.manual_seed(0)
    cfg = get_config("shapes-hard-tiny", [*NO_POSITION, f"model.padding={padding}", *extra])
    return build_model(cfg).eval()


def _shift_error(model: nn.Module) -> tuple[float, float]:
    """Largest change of the FPN levels and of the mask features when the input is rolled by 64 px,
    after rolling the outputs back by the same distance (64 px is a multiple of every stride)."""
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    rolled = torch.roll(x, (64, 64), (2, 3))
    with torch.no_grad():
        fa, fb = model.backbone(x), model.backbone(rolled)
        ma, mb = model.instance_head(fa)[2], model.instance_head(fb)[2]

    def err(a, b):
        s = 64 * a.shape[-1] // 128
        return (torch.roll(a, (s, s), (2, 3)) - b).abs().max().item()

    return max(err(fa[k], fb[k]) for k in fa), err(ma, mb)


def test_circular_padding_makes_features_and_mask_features_shift_equivariant():
    fpn, mask = _shift_error(_model("circular"))
    assert fpn < 1e-5 and mask < 1e-5


def test_zero_padding_is_not_shift_equivariant():
    # The border tells a zero-padded network where it is: the reason for the circular control.
    fpn, mask = _shift_error(_model("zeros"))
    assert fpn > 1e-2 and mask > 1e-2


def test_padding_changes_no_weight():
    a, b = _model("zeros").state_dict(), _model("circular").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_circular_upsample_is_plain_upsampling_inside_and_wraps_at_the_border():
    x = torch.rand(1, 2, 6, 6)
    plain = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)(x)
    circ = CircularUpsample(2)(x)
    assert circ.shape == plain.shape
    torch.testing.assert_close(circ[..., 1:-1, 1:-1], plain[..., 1:-1, 1:-1])
    # The first output row blends row 0 with the last row (weights 3/4, 1/4) instead of clamping.
    expected_row0 = nn.Upsample(scale_factor=(1, 2), mode="bilinear", align_corners=False)(
        0.75 * x[..., :1, :] + 0.25 * x[..., -1:, :]
    )
    torch.testing.assert_close(circ[..., :1, 1:-1], expected_row0[..., 1:-1])
    torch.testing.assert_close(torch.roll(CircularUpsample(2)(torch.roll(x, 2, -1)), -4, -1), circ)


def test_set_padding_mode_converts_convs_and_pools_in_place():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 1), nn.MaxPool2d(3, 2, 1))
    set_padding_mode(net, "circular")
    assert net[0].padding_mode == "circular" and net[1].padding_mode == "zeros"  # nothing to pad
    assert isinstance(net[2], nn.Sequential) and net[2][1].padding == 0
    with pytest.raises(ValueError, match="padding mode 'reflect'"):
        set_padding_mode(net, "reflect")


def test_config_names_the_key_for_a_bad_mode_and_refuses_dcn():
    with pytest.raises(ConfigError, match="model.padding"):
        build_model(get_config("shapes-hard-tiny", ["model.padding=mirror"]))
    with pytest.raises(ConfigError, match="model.backbone.dcn=false"):
        build_model(get_config("shapes-hard-tiny", ["model.padding=circular", "model.backbone.dcn=true"]))
