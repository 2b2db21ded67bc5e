"""Panoptic fusion (Kirillov et al.'s heuristic) on hand-made masks with known answers."""

import pytest
import torch

from cfnet.panoptic_fusion import panoptic_fusion

T = 2  # things 0, 1; stuff 2, 3, 4


def _rect(h, w, y0, y1, x0, x1):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def _fuse(masks, labels, scores, semantic, **kw):
    kw.setdefault("stuff_area", 1)
    return panoptic_fusion(
        torch.stack(masks) if masks else torch.zeros(0, *semantic.shape, dtype=torch.bool),
        torch.tensor(labels, dtype=torch.long),
        torch.tensor(scores, dtype=torch.float64),
        semantic,
        num_things=T,
        **kw,
    )


def test_higher_score_wins_the_overlap():
    h, w = 6, 10
    sem = torch.full((h, w), 255)  # no stuff: only instances
    low = _rect(h, w, 0, 4, 0, 6)  # 24 px
    high = _rect(h, w, 2, 6, 4, 10)  # 24 px; overlap rows 2..3, cols 4..5 = 4 px
    pan, info = _fuse([low, high], [0, 1], [0.3, 0.9], sem)  # lower score first in the input
    got = [(s["id"], s["label"], s["isthing"], s["area"]) for s in info]
    assert got == [(1, 1, True, 24), (2, 0, True, 20)]
    assert info[0]["score"] == pytest.approx(0.9) and info[1]["score"] == pytest.approx(0.3)
    assert (pan[high] == 1).all()
    assert (pan[low & ~high] == 2).all()
    assert (pan[~low & ~high] == 0).all()
    assert pan.dtype == torch.int64 and pan.shape == (h, w)


@pytest.mark.parametrize("inside,kept", [(51, False), (50, True), (49, True)])
def test_visible_fraction_rule(inside, kept):
    # A (score .9) = columns 0..9 of a 10×30 canvas (100 px). B (score .8) has 100 px:
    # `inside` of them inside A and the rest in columns 10..19, so B's visible fraction is
    # (100 − inside)/100: 0.49 -> dropped, 0.50 -> kept (boundary), 0.51 -> kept.
    h, w = 10, 30
    a = _rect(h, w, 0, 10, 0, 10)
    b = torch.zeros(h, w, dtype=torch.bool)
    block_a = torch.zeros(100, dtype=torch.bool)
    block_a[:inside] = True
    block_out = torch.zeros(100, dtype=torch.bool)
    block_out[: 100 - inside] = True
    b[:, :10] = block_a.view(10, 10)
    b[:, 10:20] = block_out.view(10, 10)
    assert int(b.sum()) == 100 and int((a & b).sum()) == inside
    pan, info = _fuse([a, b], [0, 0], [0.9, 0.8], torch.full((h, w), 255))
    assert len(info) == (2 if kept else 1)
    if kept:
        assert info[1]["area"] == 100 - inside
        assert (pan[b & ~a] == 2).all()
    else:
        assert int((pan == 0).sum()) == h * w - 100


def test_overlap_thr_is_configurable_and_empty_masks_are_skipped():
    h, w = 4, 4
    a = _rect(h, w, 0, 4, 0, 2)  # 8 px
    b = _rect(h, w, 0, 4, 1, 3)  # 8 px, 4 visible (0.5)
    empty = torch.zeros(h, w, dtype=torch.bool)
    sem = torch.full((h, w), 255)
    _, info = _fuse([a, b, empty], [0, 1, 1], [0.9, 0.8, 0.95], sem, overlap_thr=0.6)
    assert [s["label"] for s in info] == [0]  # 0.5 < 0.6: B dropped; the empty mask never counts
    # overlap_thr = 0 keeps B but never a fully hidden instance
    _, info = _fuse([a, b, a.clone()], [0, 1, 0], [0.9, 0.8, 0.7], sem, overlap_thr=0.0)
    assert [(s["label"], s["area"]) for s in info] == [(0, 8), (1, 4)]


def test_stuff_fills_only_free_pixels_and_thing_pixels_stay_void():
    h, w = 6, 8
    sem = torch.full((h, w), 3)  # stuff 3 everywhere ...
    sem[:, 6:] = 0  # ... except columns 6..7: semantic says thing class 0 (12 px)
    inst = _rect(h, w, 1, 4, 1, 4)  # 9 px, painted over stuff
    pan, info = _fuse([inst], [1], [0.7], sem)
    # stuff 3 = the 6×6 stuff pixels minus the 9 the instance took = 27
    got = [(s["id"], s["label"], s["isthing"], s["area"]) for s in info]
    assert got == [(1, 1, True, 9), (2, 3, False, 27)]
    assert info[1]["score"] == 1.0  # no probabilities given
    assert (pan[inst] == 1).all()
    assert (pan[:, 6:] == 0).all()  # thing-class semantic pixels no instance covers: void
    assert int((pan == 2).sum()) == 6 * 6 - 9


def test_stuff_area_limit_and_segment_order():
    h, w = 4, 5
    sem = torch.full((h, w), 4)  # stuff 4: 20 − 6 − 5 = 9 px
    sem[0, :] = 2  # stuff 2: 5 px
    sem[1, 0] = 2  # stuff 2: 6 px in all
    sem[3, :] = 3  # stuff 3: 5 px
    pan, info = _fuse([], [], [], sem, stuff_area=6)
    # stuff 3 (5 px) < 6: void; stuff 2 (6 px) == 6 kept; ids follow ascending class id
    assert [(s["id"], s["label"], s["area"]) for s in info] == [(1, 2, 6), (2, 4, 9)]
    assert (pan[sem == 3] == 0).all() and (pan[sem == 2] == 1).all() and (pan[sem == 4] == 2).all()
    # the area that counts is the free part: an instance covering 4 px of stuff 4 drops it to 5 < 6
    pan, info = _fuse([_rect(h, w, 2, 3, 0, 4)], [0], [0.5], sem, stuff_area=6)
    assert [(s["label"], s["area"]) for s in info] == [(0, 4), (2, 6)]
    assert (pan[sem == 4] != 2).all()


def test_stuff_score_from_semantic_probs():
    h, w = 2, 2
    sem = torch.tensor([[2, 2], [3, 0]])
    probs = torch.zeros(4, h, w, dtype=torch.float64)
    probs[2] = torch.tensor([[0.6, 0.8], [0.1, 0.1]])
    probs[3] = torch.tensor([[0.2, 0.1], [0.9, 0.0]])
    _, info = _fuse([], [], [], sem, semantic_probs=probs)
    assert [(s["label"], s["area"]) for s in info] == [(2, 2), (3, 1)]
    assert info[0]["score"] == pytest.approx(0.7) and info[1]["score"] == pytest.approx(0.9)


def test_score_threshold_and_stable_ties():
    h, w = 3, 3
    sem = torch.full((h, w), 255)
    m = torch.ones(h, w, dtype=torch.bool)
    # equal scores: the first in input order wins; the identical second one is fully hidden
    _, info = _fuse([m, m.clone()], [1, 0], [0.5, 0.5], sem)
    assert [s["label"] for s in info] == [1]
    _, info = _fuse([m, m.clone()], [0, 1], [0.5, 0.5], sem)
    assert [s["label"] for s in info] == [0]
    # score_thr skips instances below it (equal is kept)
    two = [_rect(h, w, 0, 1, 0, 3), _rect(h, w, 2, 3, 0, 3)]
    pan, info = _fuse(two, [0, 1], [0.29, 0.3], sem, score_thr=0.3)
    assert [(s["label"], s["score"]) for s in info] == [(1, 0.3)]
    assert (pan[0] == 0).all()


def test_validation():
    sem = torch.zeros(4, 4, dtype=torch.long)
    m = torch.zeros(1, 4, 4, dtype=torch.bool)
    one, half = torch.tensor([0]), torch.tensor([0.5])
    with pytest.raises(ValueError, match="instance_masks"):
        panoptic_fusion(torch.zeros(1, 3, 4, dtype=torch.bool), one, half, sem, num_things=T)
    with pytest.raises(ValueError, match="num_things"):
        panoptic_fusion(m, torch.tensor([2]), half, sem, num_things=T)
    with pytest.raises(ValueError, match="must both be"):
        panoptic_fusion(m, torch.tensor([0, 1]), half, sem, num_things=T)
    with pytest.raises(ValueError, match="semantic_probs"):
        panoptic_fusion(m, one, half, sem, num_things=T, semantic_probs=torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match=">= C"):
        panoptic_fusion(m, one, half, sem + 5, num_things=T, semantic_probs=torch.zeros(3, 4, 4))


def _fusion_reference(masks, labels, scores, semantic, num_things, overlap_thr, stuff_area, score_thr, probs):
    """The heuristic written out plainly: per instance, then per stuff class, pixel sets as Python sets."""
    h, w = semantic.shape
    pan = [[0] * w for _ in range(h)]
    info = []
    order = sorted(range(len(scores)), key=lambda k: -float(scores[k]))  # Python's sort is stable
    for k in order:
        if float(scores[k]) < score_thr:
            continue
        pix = {(y, x) for y in range(h) for x in range(w) if masks[k, y, x]}
        free = {(y, x) for (y, x) in pix if pan[y][x] == 0}
        if not pix or not free or len(free) < overlap_thr * len(pix):
            continue
        for y, x in free:
            pan[y][x] = len(info) + 1
        info.append({"id": len(info) + 1, "label": int(labels[k]), "isthing": True,
                     "score": float(scores[k]), "area": len(free)})  # fmt: skip
    for c in sorted({int(v) for v in semantic.flatten()}):
        if c < num_things or c == 255:
            continue
        region = [(y, x) for y in range(h) for x in range(w) if int(semantic[y, x]) == c and pan[y][x] == 0]
        if not region or len(region) < stuff_area:
            continue
        for y, x in region:
            pan[y][x] = len(info) + 1
        score = sum(float(probs[c, y, x]) for y, x in region) / len(region)
        info.append({"id": len(info) + 1, "label": c, "isthing": False, "score": score, "area": len(region)})
    return torch.tensor(pan, dtype=torch.int64), info


@pytest.mark.parametrize("seed", range(4))
def test_against_plain_transcription_on_random_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    h, w, k, c = 12, 14, 7, 6
    masks = torch.zeros(k, h, w, dtype=torch.bool)
    for i in range(k):
        y0, x0, dy, dx = torch.randint(0, 8, (4,), generator=g).tolist()
        masks[i, y0 : y0 + dy + 1, x0 : x0 + dx + 1] = True
    labels = torch.randint(0, T, (k,), generator=g)
    scores = torch.rand(k, generator=g, dtype=torch.float64)
    scores[1] = scores[0]  # a tie
    probs = torch.rand(c, h, w, generator=g, dtype=torch.float64).softmax(0)
    semantic = probs.argmax(0)
    semantic[0, :3] = 255
    kw = dict(num_things=T, overlap_thr=0.5, stuff_area=3, score_thr=0.2)
    pan, info = panoptic_fusion(masks, labels, scores, semantic, semantic_probs=probs, **kw)
    ref_pan, ref_info = _fusion_reference(masks, labels, scores, semantic, probs=probs, **kw)
    assert torch.equal(pan, ref_pan)
    assert len(info) == len(ref_info)
    assert {s["isthing"] for s in info} == {True, False}  # the case has both things and stuff
    for a, b in zip(info, ref_info):
        assert a.keys() == b.keys()
        assert {k: v for k, v in a.items() if k != "score"} == {k: v for k, v in b.items() if k != "score"}
        assert a["score"] == pytest.approx(b["score"], rel=1e-9)
