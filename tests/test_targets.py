"""SOLOv2 target assignment on hand-made instances with known answers."""

import math

import pytest
import torch

from cfnet.targets import LevelTargets, assign_targets, resize_mask_targets

T = 3  # thing classes; 3 = background in the grids


def _rect(h, w, y0, y1, x0, x1):
    """(h, w) bool mask with rows y0..y1-1 and columns x0..x1-1 set."""
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def _assign(masks, labels, grids, ranges, sigma=0.2, soft=False):
    h, w = masks.shape[-2:]
    return assign_targets(
        masks,
        torch.as_tensor(labels, dtype=torch.long),
        num_things=T,
        num_grids=grids,
        scale_ranges=ranges,
        sigma=sigma,
        mask_size=(math.ceil(h / 4), math.ceil(w / 4)),
        soft_mask_targets=soft,
    )


def _consistent(t: LevelTargets, s: int):
    """labels, positive_index and mask_targets describe the same set of cells."""
    assert t.labels.shape == (s, s) and t.labels.dtype == torch.long
    pos = torch.nonzero(t.labels.flatten() != T).flatten()
    assert torch.equal(pos, t.positive_index)
    assert torch.equal(t.positive_index, t.positive_index.sort().values)
    assert t.mask_targets.shape[0] == len(pos) and t.mask_targets.dtype == torch.float32


def test_scale_ranges_boundary_and_outside():
    # 32×32 image; ranges overlap at 8 (SOLOv2-style [lo, hi], both ends inclusive)
    h = w = 32
    masks = torch.stack(
        [
            _rect(h, w, 0, 4, 0, 4),  # scale sqrt(4·4) = 4   -> level 0 only
            _rect(h, w, 8, 10, 0, 32),  # box 32×2: sqrt(64) = 8 exactly -> levels 0 and 1
            _rect(h, w, 16, 32, 16, 32),  # scale 16 -> outside [1, 8] and [8, 12]: nowhere
        ]
    )
    lv = _assign(masks, [0, 1, 2], grids=[4, 4], ranges=[[1, 8], [8, 12]])
    for t in lv:
        _consistent(t, 4)
    assert set(lv[0].instance_index.tolist()) == {0, 1}
    assert set(lv[1].instance_index.tolist()) == {1}
    assert 2 not in lv[0].labels.unique().tolist() + lv[1].labels.unique().tolist()


def test_centre_region_of_a_large_instance():
    # 32×32 image, S = 8 (cells of 4 px). Square rows/cols 4..27: box 24×24, centre of mass 15.5.
    # centre cell floor(15.5·8/32) = 3; σ = 0.2: half = 0.5·24·0.2 = 2.4
    # rows/cols from floor((15.5 − 2.4)/4) = floor(3.275) = 3 to floor((15.5 + 2.4)/4) = floor(4.475) = 4
    m = _rect(32, 32, 4, 28, 4, 28)[None]
    (t,) = _assign(m, [2], grids=[8], ranges=[[1, 64]])
    _consistent(t, 8)
    assert t.positive_index.tolist() == [3 * 8 + 3, 3 * 8 + 4, 4 * 8 + 3, 4 * 8 + 4]
    assert t.labels[3:5, 3:5].eq(2).all() and int((t.labels != T).sum()) == 4
    # a wide box: columns 0..21 (w = 22, c_x = 10.5 -> cell 2, half_w = 2.2 -> 8.3/4, 12.7/4 -> cols 2..3),
    # rows 12..13 (h = 2, c_y = 12.5 -> cell 3, half_h = 0.2 -> 12.3/4, 12.7/4 -> row 3)
    m = _rect(32, 32, 12, 14, 0, 22)[None]
    (t,) = _assign(m, [1], grids=[8], ranges=[[1, 64]])
    assert t.positive_index.tolist() == [3 * 8 + 2, 3 * 8 + 3]


def test_huge_sigma_is_clipped_to_3x3_and_to_the_grid():
    m = _rect(32, 32, 4, 28, 4, 28)[None]
    (t,) = _assign(m, [0], grids=[8], ranges=[[1, 64]], sigma=10.0)
    # the σ-box covers the whole grid; the clip keeps rows/cols 3 ± 1
    assert t.positive_index.tolist() == [r * 8 + c for r in (2, 3, 4) for c in (2, 3, 4)]
    assert t.mask_targets.shape == (9, 8, 8)
    # in a corner the 3×3 block is also clipped by the grid: centre cell (0, 0) -> rows/cols 0..1
    m = _rect(32, 32, 0, 3, 0, 3)[None]
    (t,) = _assign(m, [0], grids=[8], ranges=[[1, 64]], sigma=10.0)
    assert t.positive_index.tolist() == [0, 1, 8, 9]


def test_largest_first_smaller_instance_keeps_its_centre_cell():
    big = _rect(32, 32, 4, 28, 4, 28)  # cells (3..4, 3..4) as above
    # small square rows/cols 16..21: centre 18.5 -> cell 4; half 0.6 -> floor(17.9/4) = floor(19.1/4) = 4
    small = _rect(32, 32, 16, 22, 16, 22)
    for masks, labels, i_big, i_small in (
        (torch.stack([big, small]), [0, 1], 0, 1),
        (torch.stack([small, big]), [1, 0], 1, 0),  # input order does not matter
    ):
        (t,) = _assign(masks, labels, grids=[8], ranges=[[1, 64]])
        _consistent(t, 8)
        assert t.positive_index.tolist() == [27, 28, 35, 36]
        assert t.instance_index.tolist() == [i_big, i_big, i_big, i_small]
        assert t.labels[4, 4] == 1 and t.labels[3, 3] == t.labels[3, 4] == t.labels[4, 3] == 0
        # the mask target of the shared cell is the small instance's
        small_t = masks[i_small, 2::4, 2::4].float()
        big_t = masks[i_big, 2::4, 2::4].float()
        assert torch.equal(t.mask_targets[3], small_t) and torch.equal(t.mask_targets[0], big_t)


def test_centre_of_mass_not_box_centre():
    # 16×16 image, S = 4 (cells of 4 px). L shape: a 2-px wide vertical bar (cols 0..1, all rows)
    # plus a 2-px high bottom bar (rows 14..15, cols 2..15).
    m = torch.zeros(16, 16, dtype=torch.bool)
    m[:, 0:2] = True
    m[14:16, 2:16] = True
    # box centre (8, 8) -> cell (2, 2). Centre of mass: vertical bar 32 px at (x 0.5, y 7.5),
    # bottom bar 28 px at (x 8.5, y 14.5): c_x = (32·0.5 + 28·8.5)/60 = 254/60 = 4.233 -> col 1,
    # c_y = (32·7.5 + 28·14.5)/60 = 646/60 = 10.767 -> row 2.
    (t,) = _assign(m[None], [1], grids=[4], ranges=[[1, 64]], sigma=0.01)  # σ tiny: centre cell only
    assert t.positive_index.tolist() == [2 * 4 + 1]


def test_soft_vs_hard_mask_targets():
    # 8×8 image -> 2×2 mask targets. Instance: rows 0..2, cols 0..5 (3×6).
    m = _rect(8, 8, 0, 3, 0, 6)[None]
    hard = resize_mask_targets(m, (2, 2))
    soft = resize_mask_targets(m, (2, 2), soft=True)
    # hard = nearest sample at the block centres (2, 2), (2, 6), (6, 2), (6, 6)
    assert hard[0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    # soft = coverage of each 4×4 block: 3·4/16 = 0.75, 3·2/16 = 0.375, 0, 0
    assert soft[0].tolist() == [[0.75, 0.375], [0.0, 0.0]]
    # a 2×2 object vanishes from the hard target but not from the soft one (4/16 = 0.25)
    tiny = _rect(8, 8, 0, 2, 0, 2)[None]
    assert resize_mask_targets(tiny, (2, 2)).sum() == 0
    assert resize_mask_targets(tiny, (2, 2), soft=True)[0].tolist() == [[0.25, 0.0], [0.0, 0.0]]
    # through assign_targets
    (t_h,) = _assign(m, [0], grids=[2], ranges=[[1, 64]])
    (t_s,) = _assign(m, [0], grids=[2], ranges=[[1, 64]], soft=True)
    assert torch.equal(t_h.mask_targets[0], hard[0]) and torch.equal(t_s.mask_targets[0], soft[0])


def test_padding_to_mask_size():
    # 6×6 input -> mask_size (2, 2) with 2 rows/cols of zero padding; a full mask covers
    # 4·4 = 16, 4·2 = 8, 8 and 4 pixels of the four padded 4×4 blocks
    m = torch.ones(1, 6, 6, dtype=torch.bool)
    soft = resize_mask_targets(m, (2, 2), soft=True)
    assert soft[0].tolist() == [[1.0, 0.5], [0.5, 0.25]]
    assert resize_mask_targets(m, (2, 2))[0].tolist() == [[1.0, 0.0], [0.0, 0.0]]  # samples at 2 and 6


def test_empty_masks_and_no_instances():
    masks = torch.stack([torch.zeros(16, 16, dtype=torch.bool), _rect(16, 16, 0, 8, 0, 8)])
    lv = _assign(masks, [0, 1], grids=[4, 2], ranges=[[1, 64], [1, 64]])
    for t, s in zip(lv, (4, 2)):
        _consistent(t, s)
        assert t.instance_index.unique().tolist() == [1]
    none = _assign(torch.zeros(0, 16, 16, dtype=torch.bool), [], grids=[4, 2], ranges=[[1, 64], [1, 64]])
    for t, s in zip(none, (4, 2)):
        assert torch.equal(t.labels, torch.full((s, s), T))
        assert t.positive_index.shape == (0,) and t.mask_targets.shape == (0, 4, 4)


def test_validation():
    m = _rect(16, 16, 0, 8, 0, 8)[None]
    kw = dict(num_things=T, num_grids=[4], scale_ranges=[[1, 64]])
    with pytest.raises(ValueError, match="mask_size"):
        assign_targets(m, torch.tensor([0]), mask_size=(5, 4), **kw)
    with pytest.raises(ValueError, match="num_things"):
        assign_targets(m, torch.tensor([3]), mask_size=(4, 4), **kw)
    kw2 = dict(num_things=T, mask_size=(4, 4))
    with pytest.raises(ValueError, match="same length"):
        assign_targets(m, torch.tensor([0]), num_grids=[4, 2], scale_ranges=[[1, 2]], **kw2)
    with pytest.raises(ValueError, match="lo <= hi"):
        assign_targets(m, torch.tensor([0]), num_grids=[4], scale_ranges=[[9, 2]], **kw2)
    with pytest.raises(ValueError, match="labels must be"):
        assign_targets(m, torch.tensor([0, 1]), mask_size=(4, 4), **kw)
