"""Matrix NMS against a literal loop transcription of its definition and hand-made cases."""

import math

import pytest
import torch

from cfnet.matrix_nms import matrix_nms


def _iou(a: set, b: set) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def _matrix_nms_loop(masks, labels, scores, kernel, sigma, compensate=True):
    """SOLOv2 Matrix NMS written out pair by pair (masks sorted by score, descending)."""
    n = len(scores)
    masks = [set(torch.nonzero(m.flatten()).flatten().tolist()) for m in masks]  # pixel sets

    def f(x):
        return math.exp(-sigma * x * x) if kernel == "gaussian" else 1.0 - x

    def same(i, j):
        return int(labels[i]) == int(labels[j])

    # compensation: max IoU of mask i with any higher-scored mask of its class
    comp = [max([_iou(masks[k], masks[i]) for k in range(i) if same(k, i)], default=0.0) for i in range(n)]
    if not compensate:
        comp = [0.0] * n
    out = []
    for j in range(n):
        decay = 1.0
        for i in range(j):
            if same(i, j):
                decay = min(decay, f(_iou(masks[i], masks[j])) / f(comp[i]))
        out.append(float(scores[j]) * decay)
    return out


@pytest.mark.parametrize("kernel,sigma", [("gaussian", 2.0), ("gaussian", 0.5), ("linear", 2.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_loop_on_random_masks(kernel, sigma, seed):
    g = torch.Generator().manual_seed(seed)
    n, h, w = 12, 7, 8
    # random boxes + noise, so that IoUs spread over (0, 1) and some pairs overlap strongly
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    for k in range(n):
        y0, x0, dy, dx = (torch.randint(0, 4, (4,), generator=g) + torch.tensor([0, 0, 2, 3])).tolist()
        masks[k, y0 : y0 + dy, x0 : x0 + dx] = True
    masks ^= torch.rand(n, h, w, generator=g) < 0.05
    labels = torch.randint(0, 2, (n,), generator=g)
    scores = torch.rand(n, generator=g, dtype=torch.float64).sort(descending=True).values

    got = matrix_nms(masks, labels, scores, kernel=kernel, sigma=sigma)
    want = torch.tensor(_matrix_nms_loop(masks, labels, scores, kernel, sigma), dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert bool((got <= scores + 1e-12).all())  # scores only ever decay
    # the case is not trivial: some masks decay, and the compensation term changes the result
    assert bool((got < 0.95 * scores).any())
    no_comp = torch.tensor(_matrix_nms_loop(masks, labels, scores, kernel, sigma, compensate=False))
    assert not torch.allclose(no_comp, want.float())

    # precomputed areas give the same result
    area = masks.sum((1, 2)).double()
    got = matrix_nms(masks, labels, scores, kernel=kernel, sigma=sigma, mask_area=area)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_identical_same_class_masks_gaussian():
    m = torch.zeros(2, 4, 4, dtype=torch.bool)
    m[:, 1:3, 1:3] = True
    scores = torch.tensor([0.9, 0.8], dtype=torch.float64)
    out = matrix_nms(m, torch.tensor([1, 1]), scores, kernel="gaussian", sigma=2.0)
    # IoU = 1, comp of the first mask = 0: decay = exp(−2·1²) / exp(0) = e^−2
    torch.testing.assert_close(out, torch.tensor([0.9, 0.8 * math.exp(-2.0)], dtype=torch.float64))
    # linear kernel: (1 − 1) / (1 − 0) = 0
    out = matrix_nms(m, torch.tensor([1, 1]), scores, kernel="linear")
    torch.testing.assert_close(out, torch.tensor([0.9, 0.0], dtype=torch.float64))


def test_different_classes_do_not_decay():
    m = torch.ones(2, 4, 4, dtype=torch.bool)
    scores = torch.tensor([0.9, 0.8])
    torch.testing.assert_close(matrix_nms(m, torch.tensor([0, 1]), scores), scores)


def test_half_overlap_and_compensation_by_hand():
    # A (score .9) = columns 0-3, B (.8) = columns 0-1 (IoU(A,B) = 1/2),
    # C (.7) = columns 0-1 too: IoU(A,C) = 1/2, IoU(B,C) = 1. All one class.
    m = torch.zeros(3, 1, 4, dtype=torch.bool)
    m[0, 0, :] = True
    m[1, 0, :2] = True
    m[2, 0, :2] = True
    scores = torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64)
    out = matrix_nms(m, torch.zeros(3, dtype=torch.long), scores, sigma=2.0)
    # B: exp(−2·0.25) = e^−0.5.   C: min(exp(−2·0.25)/1, exp(−2·1)/exp(−2·0.25)) = min(e^−0.5, e^−1.5)
    want = torch.tensor([0.9, 0.8 * math.exp(-0.5), 0.7 * math.exp(-1.5)], dtype=torch.float64)
    torch.testing.assert_close(out, want)


def test_linear_kernel_with_duplicates_stays_finite():
    m = torch.ones(3, 2, 2, dtype=torch.bool)  # three identical masks: comp = 1 for the 2nd
    out = matrix_nms(m, torch.zeros(3, dtype=torch.long), torch.tensor([0.9, 0.8, 0.7]), kernel="linear")
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.tensor([0.9, 0.0, 0.0]))


def test_empty_masks_and_empty_input():
    out = matrix_nms(torch.zeros(2, 3, 3, dtype=torch.bool), torch.tensor([0, 0]), torch.tensor([0.5, 0.4]))
    torch.testing.assert_close(out, torch.tensor([0.5, 0.4]))
    none = torch.zeros(0, 3, 3, dtype=torch.bool)
    empty = matrix_nms(none, torch.zeros(0, dtype=torch.long), torch.zeros(0))
    assert empty.shape == (0,)


def test_validation():
    m = torch.zeros(2, 3, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="descending"):
        matrix_nms(m, torch.tensor([0, 0]), torch.tensor([0.1, 0.5]))
    with pytest.raises(ValueError, match="kernel"):
        matrix_nms(m, torch.tensor([0, 0]), torch.tensor([0.5, 0.1]), kernel="box")
    with pytest.raises(ValueError, match="must both be"):
        matrix_nms(m, torch.tensor([0]), torch.tensor([0.5, 0.1]))
    with pytest.raises(ValueError, match="mask_area"):
        matrix_nms(m, torch.tensor([0, 0]), torch.tensor([0.5, 0.1]), mask_area=torch.ones(3))
