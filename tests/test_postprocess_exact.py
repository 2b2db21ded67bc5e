"""The faster post-processing is bit-identical to the previous one (``tests/reference_postprocess.py``).

Each piece (``postprocess_map``, Matrix NMS, instance ``predict``, the fusion's stuff scores, the
whole ``CFNet.postprocess``) is run old and new on the same inputs and compared with
``torch.equal`` / ``==``: random inputs (with ties, empty masks, many and few labels, strides that
are and are not powers of two, with and without the final resize) and real model outputs (the
shipped model on the COCO sample and on ``shapes`` images, and a random-weight 133-class model with
lowered thresholds so that many masks survive Matrix NMS).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference_postprocess as ref
import torch
from PIL import Image
from tiny import TINY_MODEL

import cfnet
from cfnet.config import get_config
from cfnet.matrix_nms import matrix_nms
from cfnet.model import build_model
from cfnet.panoptic_fusion import panoptic_fusion
from cfnet.transform import PanopticTransform

COCO_SAMPLE = Path(__file__).parent / "data" / "coco-panoptic-val2017-sample" / "images"
EXAMPLES = Path(__file__).parent.parent / "app" / "examples"


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    # reductions may split differently over threads: check both
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def _load(path: Path) -> torch.Tensor:
    rgb = np.array(Image.open(path).convert("RGB"))
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255


def _assert_same_output(old: dict, new: dict) -> None:
    assert torch.equal(old["panoptic_seg"], new["panoptic_seg"])
    assert old["segments_info"] == new["segments_info"]
    assert torch.equal(old["sem_seg"], new["sem_seg"])
    for key in ("masks", "labels", "scores"):
        assert torch.equal(old["instances"][key], new["instances"][key]), key


@pytest.mark.parametrize(
    "channels,low,stride,image,original",
    [
        (7, (16, 20), 4, (61, 77), (61, 77)),  # crop, no resize
        (7, (16, 20), 4, (64, 80), (64, 80)),  # nothing to crop
        (5, (8, 10), 8, (57, 73), (120, 150)),  # crop + upscaling resize
        (3, (12, 12), 4, (45, 47), (30, 31)),  # crop + downscaling resize
        (4, (9, 11), 3, (25, 31), (25, 31)),  # non-power-of-two stride: the old path
        (133, (25, 42), 4, (100, 166), (100, 166)),
    ],
)
def test_postprocess_map_matches_reference(threads, channels, low, stride, image, original):
    g = torch.Generator().manual_seed(channels)
    x = torch.randn(channels, *low, generator=g) * 4
    padded = (low[0] * stride, low[1] * stride)
    old = ref.postprocess_map(x, padded, image, original)
    new = PanopticTransform.postprocess_map(x, padded, image, original)
    assert new.shape == old.shape == (channels, *original)
    assert torch.equal(new, old)


@pytest.mark.parametrize("num_labels", [1, 3, 40])
@pytest.mark.parametrize("kernel,dtype", [("gaussian", torch.float32), ("linear", torch.float32),
                                          ("gaussian", torch.float64)])
def test_matrix_nms_matches_reference(threads, num_labels, kernel, dtype):
    g = torch.Generator().manual_seed(num_labels)
    n, h, w = 120, 23, 29
    # blobs of different sizes, some identical, some empty
    centre = torch.rand(n, 2, generator=g) * torch.tensor([h, w])
    radius = torch.rand(n, generator=g) * 12
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    masks = ((yy - centre[:, :1, None]) ** 2 + (xx - centre[:, 1:, None]) ** 2) < radius[:, None, None] ** 2
    masks[5] = masks[4]
    masks[7] = False
    labels = torch.randint(num_labels, (n,), generator=g)
    labels[5] = labels[4]
    scores = torch.rand(n, generator=g, dtype=dtype).sort(descending=True).values
    scores[10] = scores[9]  # a tie
    for area in (None, masks.sum((1, 2)).float()):
        old = ref.matrix_nms(masks, labels, scores, kernel=kernel, mask_area=area)
        new = matrix_nms(masks, labels, scores, kernel=kernel, mask_area=area)
        assert torch.equal(old, new)


def test_matrix_nms_is_exact_under_autocast():
    # `cfnet bench model --amp` runs the post-processing under autocast: the IoU matmul must not
    # drop to half precision (pixel counts above 256 are not exact in bf16, above 65504 overflow fp16)
    g = torch.Generator().manual_seed(5)
    masks = torch.rand(30, 40, 50, generator=g) > 0.3
    labels = torch.randint(2, (30,), generator=g)
    scores = torch.rand(30, generator=g).sort(descending=True).values
    plain = matrix_nms(masks, labels, scores)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(matrix_nms(masks, labels, scores), plain)


def test_max_indices_equal_argmax_with_ties(threads):
    # the post-processing takes the semantic argmax from probs.max(0): same first-max rule
    g = torch.Generator().manual_seed(0)
    probs = torch.randint(4, (133, 50, 70), generator=g).float() / 4  # many ties
    values, indices = probs.max(0)
    assert torch.equal(indices, probs.argmax(0))
    assert torch.equal(values, probs.gather(0, indices[None])[0])


def test_fusion_semantic_score_equals_gather():
    g = torch.Generator().manual_seed(1)
    probs = torch.randn(9, 40, 50, generator=g).softmax(0)
    score, semantic = probs.max(0)
    masks = torch.rand(3, 40, 50, generator=g) > 0.7
    labels, scores = torch.tensor([0, 1, 0]), torch.tensor([0.9, 0.8, 0.7])
    kw = dict(num_things=3, stuff_area=10, semantic_probs=probs)
    a = panoptic_fusion(masks, labels, scores, semantic, **kw)
    b = panoptic_fusion(masks, labels, scores, semantic, semantic_score=score, **kw)
    c = ref.panoptic_fusion(masks, labels, scores, semantic, **kw)
    assert torch.equal(a[0], b[0]) and torch.equal(a[0], c[0])
    assert a[1] == b[1] == c[1]


def _compare_model(model, images, threads, boost=None):
    model.eval()
    with torch.no_grad():
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        batch, _ = model.transform(images)
        features = model.features(batch.tensors)
        sem = model.semantic_head(features)
        inst = model.instance_head(features)
        if boost is not None:
            inst = (boost(inst[0]), inst[1], inst[2])
        old = ref.postprocess(model, sem, inst, batch, sizes)
        new = model.postprocess(sem, inst, batch, sizes)
    kept = 0
    for o, n in zip(old, new):
        _assert_same_output(o, n)
        kept += o["instances"]["masks"].shape[0]
    return kept


def test_shipped_model_on_coco_sample_and_shapes(threads):
    model, _, _ = cfnet.load_checkpoint("default")
    coco = [_load(p) for p in sorted(COCO_SAMPLE.iterdir())]
    shapes = [_load(p) for p in sorted(EXAMPLES.glob("shapes-*.png"))][:3]
    # one batch of differently sized images (padding, crop and resize back to each original)
    _compare_model(model, coco, threads)
    assert _compare_model(model, shapes, threads) > 0
    # a shapes image upscaled: the masks are brought back to a large original
    big = torch.nn.functional.interpolate(shapes[0][None], size=(300, 500), mode="bilinear")[0]
    assert _compare_model(model, [big], threads) > 0


def test_random_133_class_model_with_many_surviving_masks(threads):
    torch.manual_seed(0)
    cfg = get_config("shapes-tiny", [*TINY_MODEL, "model.categories=coco", "model.input.min_size_test=96",
                                     "model.input.max_size_test=160"])
    model = build_model(cfg)

    def boost(cate_preds):  # sparse confident cells, like a trained model's, in many classes
        g = torch.Generator().manual_seed(3)
        out = []
        for c in cate_preds:
            x = torch.full_like(c, -8.0)
            sel = torch.rand(c.shape, generator=g) < 0.01
            x[sel] = torch.rand(int(sel.sum()), generator=g) * 4
            out.append(x)
        return out

    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 120, 150, generator=g), torch.rand(3, 97, 61, generator=g)]
    assert _compare_model(model, images, threads, boost) > 5
    # the real COCO sample at its own sizes (resized to 96 px for the network and back)
    coco = [_load(p) for p in sorted(COCO_SAMPLE.iterdir())]
    assert _compare_model(model, coco, threads, boost) > 5
