"""Losses against hand-computed values and loop transcriptions of their formulas."""

import math

import pytest
import torch

from cfnet.losses import dice_loss, semantic_loss, sigmoid_focal_loss

LN2 = math.log(2.0)


def test_dice_hand_made_2x2():
    probs = torch.tensor(
        [
            [[1.0, 0.5], [0.0, 0.0]],  # partial overlap
            [[0.0, 0.0], [0.0, 0.0]],  # empty prediction and empty target
            [[1.0, 1.0], [1.0, 1.0]],  # perfect prediction
        ],
        dtype=torch.float64,
    )
    targets = torch.tensor(
        [[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]], dtype=torch.float64
    )
    loss = dice_loss(probs, targets)
    # #0: Σpt = 1·1 + 0.5·1 = 1.5; Σp² = 1 + 0.25 = 1.25; Σt² = 2  ->  1 − 3 / (1.251 + 2.001)
    # #1: Σpt = 0, Σp² = Σt² = 0                                   ->  1 − 0 / 0.002 = 1
    # #2: Σpt = 4, Σp² = Σt² = 4                                   ->  1 − 8 / 8.002
    expected = torch.tensor([1 - 3 / 3.252, 1.0, 1 - 8 / 8.002], dtype=torch.float64)
    assert loss.shape == (3,)
    torch.testing.assert_close(loss, expected)


def test_dice_eps_and_soft_target_minimum():
    p = torch.tensor([[[0.5, 0.25]]], dtype=torch.float64)
    # eps = 0 and t = p: 1 − 2Σp² / (Σp² + Σp²) = 0 exactly.
    assert dice_loss(p, p.clone(), eps=0.0).item() == pytest.approx(0.0, abs=1e-15)
    # with soft targets the minimum is at p = t: moving p away from t increases the loss
    t = torch.tensor([[[0.5, 0.25]]], dtype=torch.float64)
    base = dice_loss(t, t, eps=0.0).item()
    for dp in (torch.tensor([[[0.1, 0.0]]]), torch.tensor([[[0.0, -0.1]]])):
        assert dice_loss(t + dp.double(), t, eps=0.0).item() > base


def test_dice_shape_errors():
    with pytest.raises(ValueError, match="differ"):
        dice_loss(torch.zeros(2, 3, 3), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="K, H, W"):
        dice_loss(torch.zeros(3, 3), torch.zeros(3, 3))


def test_focal_hand_made():
    # logits 0 -> p = 0.5 for both classes; BCE = ln 2 each; (1 − p_t)^2 = 0.25.
    logits = torch.zeros(2, 2, dtype=torch.float64)
    labels = torch.tensor([0, 2])  # cell 0 is class 0, cell 1 is background (C = 2)
    loss = sigmoid_focal_loss(logits, labels)
    # cell 0: positive class 0: 0.25 (α) · 0.25 · ln2; negative class 1: 0.75 (1 − α) · 0.25 · ln2
    # cell 1: both negative: 2 · 0.75 · 0.25 · ln2
    expected = (0.0625 + 0.1875 + 0.375) * LN2
    assert loss.item() == pytest.approx(expected, rel=1e-12)

    # logit ln 3 -> p = 0.75. Positive: −α (1 − p)^γ log p = −0.25 · 0.0625 · log 0.75
    #                        Negative: −(1 − α) p^γ log(1 − p) = −0.75 · 0.5625 · log 0.25
    x = torch.tensor([[math.log(3.0)]], dtype=torch.float64)
    assert sigmoid_focal_loss(x, torch.tensor([0])).item() == pytest.approx(-0.25 * 0.0625 * math.log(0.75))
    assert sigmoid_focal_loss(x, torch.tensor([1])).item() == pytest.approx(-0.75 * 0.5625 * math.log(0.25))


def _focal_loop(logits, labels, alpha, gamma):
    total = 0.0
    m, c = logits.shape
    for i in range(m):
        for k in range(c):
            x = float(logits[i, k])
            p = 1.0 / (1.0 + math.exp(-x))
            if int(labels[i]) == k:
                total += -alpha * (1 - p) ** gamma * math.log(p)
            else:
                total += -(1 - alpha) * p**gamma * math.log(1 - p)
    return total


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.5, 1.0), (0.9, 0.0)])
def test_focal_against_loop(alpha, gamma):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(13, 5, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, 6, (13,), generator=g)  # 5 = background
    labels[0] = 5
    labels[1] = 2
    got = sigmoid_focal_loss(logits, labels, alpha=alpha, gamma=gamma).item()
    assert got == pytest.approx(_focal_loop(logits, labels, alpha, gamma), rel=1e-10)


def test_focal_grad_and_errors():
    logits = torch.zeros(3, 4, requires_grad=True)
    sigmoid_focal_loss(logits, torch.tensor([0, 4, 3])).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        sigmoid_focal_loss(torch.zeros(2, 4), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="labels must be"):
        sigmoid_focal_loss(torch.zeros(2, 4), torch.tensor([0, 1, 2]))


def test_semantic_loss_with_ignore():
    # 1 image, 2 classes, 1×3 pixels; logits chosen so that the softmax is easy by hand.
    logits = torch.zeros(1, 2, 1, 3, dtype=torch.float64)
    logits[0, 0, 0, 1] = math.log(3.0)  # pixel 1: softmax = (3/4, 1/4)
    logits[0, 1, 0, 2] = 50.0  # pixel 2: would be a large loss for class 0 — but it is ignored
    targets = torch.tensor([[[1, 0, 255]]])
    # pixel 0: −log(1/2) = ln 2; pixel 1: −log(3/4); mean over the 2 valid pixels
    expected = (LN2 - math.log(0.75)) / 2
    assert semantic_loss(logits, targets).item() == pytest.approx(expected, rel=1e-12)
    # a custom ignore index
    targets2 = torch.tensor([[[1, 0, 7]]])
    assert semantic_loss(logits, targets2, ignore_index=7).item() == pytest.approx(expected, rel=1e-12)


def test_semantic_loss_all_ignored_has_grad_path():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = semantic_loss(logits, torch.full((2, 4, 4), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad == 0)


def test_semantic_loss_errors():
    with pytest.raises(ValueError, match="outside"):
        semantic_loss(torch.zeros(1, 3, 2, 2), torch.tensor([[[0, 3], [255, 1]]]))
    with pytest.raises(ValueError, match="match logits"):
        semantic_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 3, dtype=torch.long))
