"""COCO-panoptic reading (real COCO val2017 sample), malformed data, split layouts, transforms."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cfnet.categories import IGNORE_INDEX, Categories
from cfnet.config import get_config
from cfnet.data import (
    PanopticDataset,
    RandomCrop,
    RandomHorizontalFlip,
    ResizeShortestEdge,
    build_transforms,
    collate,
    resolve_split,
)
from cfnet.data.transforms import crop, hflip, resize, shortest_edge_size
from cfnet.panoptic_io import (
    PanopticFormatError,
    id2rgb,
    read_panoptic_png,
    rgb2id,
    write_panoptic_png,
)

SAMPLE = Path(__file__).parent / "data" / "coco-panoptic-val2017-sample"


@pytest.fixture(scope="module")
def sample(coco) -> PanopticDataset:
    return PanopticDataset(SAMPLE, categories=coco)


def _copy_sample(dst: Path) -> Path:
    """A writable copy of the sample (the originals are read-only)."""
    for src in SAMPLE.rglob("*"):
        if src.is_file():
            out = dst / src.relative_to(SAMPLE)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
    return dst


# ----------------------------------------------------------------------------------------------
# id <-> RGB


def test_rgb_id_roundtrip(tmp_path):
    ids = np.array([[0, 1, 255], [256, 65536, 256**3 - 1]], np.int64)
    assert np.array_equal(rgb2id(id2rgb(ids)), ids)
    assert id2rgb(np.array([[1 + 2 * 256 + 3 * 65536]]))[0, 0].tolist() == [1, 2, 3]
    write_panoptic_png(tmp_path / "x.png", ids)
    assert np.array_equal(read_panoptic_png(tmp_path / "x.png"), ids)
    with pytest.raises(ValueError, match="segment ids"):
        id2rgb(np.array([[256**3]]))


# ----------------------------------------------------------------------------------------------
# the real COCO sample


def test_sample_categories_match_shipped_coco(coco):
    data = json.loads((SAMPLE / "panoptic.json").read_text())
    assert len(data["categories"]) == 133
    json_cats = Categories(data["categories"])
    assert (json_cats.num_things, json_cats.num_stuff) == (80, 53)
    assert [(r["id"], r["isthing"]) for r in json_cats.records] == [
        (r["id"], r["isthing"]) for r in coco.records
    ]


def test_sample_loads(sample, coco):
    assert len(sample) == 3
    data = json.loads((SAMPLE / "panoptic.json").read_text())
    anns = {a["image_id"]: a for a in data["annotations"]}
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    for i in range(len(sample)):
        image, t = sample[i]
        h, w = sizes[t["image_id"]]
        assert image.dtype == torch.float32 and image.shape == (3, h, w)
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert (t["height"], t["width"]) == (h, w)
        segs = anns[t["image_id"]]["segments_info"]
        things = [s for s in segs if coco.is_thing(coco.contiguous(s["category_id"]))]
        n_inst = sum(1 for s in things if not s["iscrowd"])
        n_crowd = sum(1 for s in things if s["iscrowd"])
        assert t["masks"].dtype == torch.bool and t["masks"].shape == (n_inst, h, w)
        assert t["labels"].dtype == torch.int64 and t["labels"].shape == (n_inst,)
        assert t["crowd_masks"].shape == (n_crowd, h, w)
        assert bool((t["labels"] < coco.num_things).all())
        assert t["sem_seg"].dtype == torch.int64 and t["sem_seg"].shape == (h, w)

        ids = read_panoptic_png(SAMPLE / "panoptic" / anns[t["image_id"]]["file_name"])
        sem = t["sem_seg"].numpy()
        assert np.all(sem[ids == 0] == IGNORE_INDEX)  # void
        for s in segs:
            px = ids == s["id"]
            assert px.sum() == s["area"]
            expected = IGNORE_INDEX if s["iscrowd"] else coco.contiguous(s["category_id"])
            assert np.all(sem[px] == expected), s
        # each instance mask is exactly its segment, with its label
        for m, lab in zip(t["masks"].numpy(), t["labels"].tolist()):
            sid = np.unique(ids[m])
            assert len(sid) == 1
            seg = next(s for s in segs if s["id"] == sid[0])
            assert m.sum() == seg["area"] and coco.contiguous(seg["category_id"]) == lab


def test_sample_crowd_and_known_image(sample, coco):
    # 142238: 13 people + 1 sports ball, one crowd of people
    i = next(i for i in range(len(sample)) if sample.image_info(i)["id"] == 142238)
    _, t = sample[i]
    person, ball = coco.contiguous(1), coco.contiguous(37)
    assert sorted(t["labels"].tolist()) == [person] * 13 + [ball]
    assert t["crowd_labels"].tolist() == [person]
    assert int(t["crowd_masks"].sum()) == 24295
    assert bool((t["sem_seg"][t["crowd_masks"][0]] == IGNORE_INDEX).all())


def test_default_categories_come_from_json():
    ds = PanopticDataset(SAMPLE)
    assert ds.categories.num_classes == 133
    ds.validate(progress=False)


def test_given_categories_must_know_every_json_id(coco):
    fewer = Categories([r for r in coco.records if r["id"] != 90])
    with pytest.raises(PanopticFormatError, match=r"panoptic\.json: category id 90 .*not one of the given"):
        PanopticDataset(SAMPLE, categories=fewer)
    with pytest.raises(PanopticFormatError, match=r"category id 4 .*isthing=1, but the given"):
        PanopticDataset(SAMPLE, categories=Categories.from_spec("shapes"))  # ids 4-6 are stuff there


def test_collate_and_dataloader(sample):
    loader = torch.utils.data.DataLoader(sample, batch_size=2, collate_fn=collate)
    images, targets = next(iter(loader))
    assert len(images) == len(targets) == 2
    assert images[0].shape[1:] == targets[0]["sem_seg"].shape


# ----------------------------------------------------------------------------------------------
# layouts


def test_resolve_coco_and_ade_layouts(tmp_path):
    data = json.loads((SAMPLE / "panoptic.json").read_text())
    # COCO: root/val2017, root/annotations/panoptic_val2017.json + panoptic_val2017/
    coco_root = tmp_path / "coco"
    shutil.copytree(SAMPLE / "images", coco_root / "val2017")
    shutil.copytree(SAMPLE / "panoptic", coco_root / "annotations" / "panoptic_val2017")
    (coco_root / "annotations" / "panoptic_val2017.json").write_text(json.dumps(data))
    expected = (
        coco_root / "val2017",
        coco_root / "annotations" / "panoptic_val2017",
        coco_root / "annotations" / "panoptic_val2017.json",
    )
    assert tuple(resolve_split(coco_root, split="val2017")) == expected
    assert tuple(resolve_split(coco_root)) == expected  # the only split
    assert tuple(resolve_split(expected[2])) == expected
    assert len(PanopticDataset(coco_root, split="val2017")) == 3
    with pytest.raises(FileNotFoundError, match="no split 'train2017'"):
        resolve_split(coco_root, split="train2017")

    # ADE20k-panoptic (detectron2's conversion): images/validation, ade20k_panoptic_val{.json,/}
    ade = tmp_path / "ADEChallengeData2016"
    shutil.copytree(SAMPLE / "images", ade / "images" / "validation")
    shutil.copytree(SAMPLE / "panoptic", ade / "ade20k_panoptic_val")
    (ade / "ade20k_panoptic_val.json").write_text(json.dumps(data))
    paths = resolve_split(ade, split="val")
    assert paths == (
        ade / "images" / "validation",
        ade / "ade20k_panoptic_val",
        ade / "ade20k_panoptic_val.json",
    )
    assert resolve_split(ade, split="validation") == paths

    # a root holding several project-layout splits needs split=
    root = tmp_path / "shapes"
    for s in ("train", "val"):
        shutil.copytree(SAMPLE, root / s)
    assert resolve_split(root, split="val").json_path == root / "val" / "panoptic.json"
    with pytest.raises(ValueError, match="several splits"):
        resolve_split(root)
    with pytest.raises(FileNotFoundError, match="no such dataset"):
        resolve_split(tmp_path / "nope")


# ----------------------------------------------------------------------------------------------
# malformed copies: every one fails with an error that names the file


def _edit_json(root: Path, fn) -> None:
    p = root / "panoptic.json"
    data = json.loads(p.read_text())
    fn(data)
    p.write_text(json.dumps(data))


def _first_ann(data, image_id=39769):
    return next(a for a in data["annotations"] if a["image_id"] == image_id)


def _load_all(root: Path) -> None:
    ds = PanopticDataset(root)
    for i in range(len(ds)):
        ds[i]


def test_png_id_missing_from_segments_info(tmp_path):
    root = _copy_sample(tmp_path / "s")
    _edit_json(root, lambda d: _first_ann(d)["segments_info"].pop(0))
    with pytest.raises(PanopticFormatError, match=r"000000039769\.png.*in the PNG but not in segments_info"):
        _load_all(root)
    with pytest.raises(PanopticFormatError, match=r"(?s)1 of 3 items are bad.*000000039769\.png"):
        PanopticDataset(root).validate(progress=False)


def test_segments_info_id_absent_from_png(tmp_path):
    root = _copy_sample(tmp_path / "s")

    def add(d):
        _first_ann(d)["segments_info"].append({"id": 77, "category_id": 1, "iscrowd": 0})

    _edit_json(root, add)
    with pytest.raises(PanopticFormatError, match=r"000000039769\.png.*in the PNG"):
        _load_all(root)


def test_unknown_category_id(tmp_path):
    root = _copy_sample(tmp_path / "s")

    def bad(d):
        _first_ann(d)["segments_info"][0]["category_id"] = 9999

    _edit_json(root, bad)
    with pytest.raises(
        PanopticFormatError, match=r"panoptic\.json.*000000039769\.png.*unknown category id 9999"
    ):
        PanopticDataset(root)


def test_missing_image(tmp_path):
    root = _copy_sample(tmp_path / "s")
    (root / "images" / "000000142238.jpg").unlink()
    ds = PanopticDataset(root)
    with pytest.raises(FileNotFoundError, match=r"000000142238\.jpg: image not found"):
        _load_all(root)
    with pytest.raises(PanopticFormatError, match=r"(?s)1 of 3 items are bad.*142238\.jpg: image not found"):
        ds.validate(progress=False)


def test_truncated_png(tmp_path):
    root = _copy_sample(tmp_path / "s")
    p = root / "panoptic" / "000000439180.png"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(PanopticFormatError, match=r"000000439180\.png: cannot decode panoptic PNG"):
        _load_all(root)


def test_truncated_image(tmp_path):
    root = _copy_sample(tmp_path / "s")
    p = root / "images" / "000000142238.jpg"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])
    with pytest.raises(PanopticFormatError, match=r"000000142238\.jpg: cannot decode image"):
        _load_all(root)


def test_size_mismatch(tmp_path):
    root = _copy_sample(tmp_path / "s")
    p = root / "panoptic" / "000000039769.png"
    ids = read_panoptic_png(p)
    write_panoptic_png(p, ids[:-10])
    with pytest.raises(PanopticFormatError, match=r"000000039769\.png: size 640x470 differs from its image"):
        _load_all(root)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("annotations"), "missing or non-list field 'annotations'"),
        (lambda d: _first_ann(d)["segments_info"][0].pop("id"), r"segments_info\[0\] has no 'id' field"),
        (lambda d: _first_ann(d).update(file_name=3), r"field 'file_name' has invalid value 3"),
        (lambda d: d["images"][0].update(height=-1), r"images\[0\]: field 'height' has invalid value -1"),
        (lambda d: _first_ann(d).update(image_id=12345), "image_id 12345 has no entry in 'images'"),
        (lambda d: d["categories"][0].pop("isthing"), r"categories\[0\] has no 'isthing'"),
    ],
)
def test_malformed_json_fields(tmp_path, edit, message):
    root = _copy_sample(tmp_path / "s")
    _edit_json(root, edit)
    with pytest.raises(PanopticFormatError, match=r"panoptic\.json: .*" + message):
        PanopticDataset(root)


def test_invalid_json(tmp_path):
    root = _copy_sample(tmp_path / "s")
    (root / "panoptic.json").write_text("{not json")
    with pytest.raises(PanopticFormatError, match=r"panoptic\.json: not valid JSON"):
        PanopticDataset(root)


def test_grayscale_and_palette_images_become_rgb(tmp_path):
    root = _copy_sample(tmp_path / "s")
    p = root / "images" / "000000039769.png"
    rgb = np.asarray(Image.open(p).convert("RGB"))
    Image.fromarray(rgb).convert("L").save(p)
    image, _ = PanopticDataset(root)[2]
    assert image.shape[0] == 3 and torch.equal(image[0], image[1])
    Image.fromarray(rgb).convert("P").save(p)
    image, _ = PanopticDataset(root)[2]
    assert image.shape == (3, 480, 640)


# ----------------------------------------------------------------------------------------------
# transforms: image, masks and sem_seg stay aligned


def _coded_example(h=6, w=8):
    """Image whose channel 0 codes the sem_seg label, channel 1 the instance (0 = none)."""
    sem = torch.zeros(h, w, dtype=torch.int64)
    sem[:, w // 2 :] = 1
    sem[0, :] = IGNORE_INDEX
    masks = torch.zeros(2, h, w, dtype=torch.bool)
    masks[0, 1:3, 1:3] = True
    masks[1, 3:5, 5:7] = True
    sem[masks[0]] = 2
    sem[masks[1]] = 3
    image = torch.zeros(3, h, w)
    image[0] = torch.where(sem == IGNORE_INDEX, torch.tensor(9), sem).float() / 10
    image[1] = (masks[0].float() * 1 + masks[1].float() * 2) / 10
    target = {"masks": masks, "labels": torch.tensor([0, 1]), "sem_seg": sem}
    return image, target


def test_resize_upscale_exact():
    image, t = _coded_example()
    img2, t2 = resize(image, t, (12, 16))
    # nearest-neighbour x2 repeats every label pixel in a 2x2 block
    assert torch.equal(t2["sem_seg"], t["sem_seg"].repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert torch.equal(t2["masks"], t["masks"].repeat_interleave(2, 1).repeat_interleave(2, 2))
    assert img2.shape == (3, 12, 16)
    # away from borders the bilinear image keeps the label code under every label pixel
    inner = t2["masks"][0].clone()
    inner[[2, 5], :] = False
    inner[:, [2, 5]] = False
    assert torch.allclose(img2[1][inner], torch.tensor(0.1))


def test_resize_downscale_keeps_pixel_centres():
    sem = torch.arange(8).repeat(8, 1)  # column index
    image = sem[None].float().repeat(3, 1, 1)
    _, t = resize(image, {"sem_seg": sem}, (4, 4))
    assert t["sem_seg"][0].tolist() == [1, 3, 5, 7]  # floor((j + 0.5) * 2)


def test_shortest_edge_size():
    assert shortest_edge_size(427, 640, 800, 1333) == (800, 1199)
    assert shortest_edge_size(360, 640, 800, 1333) == (750, 1333)  # capped by the long side
    assert shortest_edge_size(128, 128, 144, 288) == (144, 144)


def test_hflip_exact():
    image, t = _coded_example()
    img2, t2 = hflip(image, t)
    assert torch.equal(img2, image.flip(-1))
    assert torch.equal(t2["sem_seg"], t["sem_seg"].flip(-1))
    assert t2["masks"][0, 1:3, 5:7].all() and int(t2["masks"][0].sum()) == 4
    assert torch.equal(t2["labels"], t["labels"])


def test_crop_drops_vanished_instances():
    image, t = _coded_example()
    img2, t2 = crop(image, t, top=0, left=0, height=4, width=4)  # only instance 0 survives
    assert img2.shape == (3, 4, 4)
    assert t2["masks"].shape == (1, 4, 4) and t2["labels"].tolist() == [0]
    assert torch.equal(t2["sem_seg"], t["sem_seg"][:4, :4])
    assert torch.equal(t2["masks"][0], t["masks"][0, :4, :4])


def _check_aligned(image, t):
    code = torch.round(image[0] * 10).long()
    sem = torch.where(code == 9, torch.tensor(IGNORE_INDEX), code)
    assert torch.equal(sem, t["sem_seg"])
    inst = torch.round(image[1] * 10).long()
    for m, lab in zip(t["masks"], t["labels"].tolist()):
        assert m.any()
        assert bool((inst[m] == lab + 1).all())


def test_random_pipeline_keeps_alignment():
    # crop + flip at random: the image's label codes must still sit on the labels they code
    gen = torch.Generator().manual_seed(0)
    pipeline = [RandomCrop((4, 5), generator=gen), RandomHorizontalFlip(0.5, generator=gen)]
    flipped = 0
    for _ in range(30):
        image, t = _coded_example()
        image[2] = torch.arange(8).float()[None, :] / 10  # x coordinate: tells whether it was flipped
        for tr in pipeline:
            image, t = tr(image, t)
        _check_aligned(image, t)
        assert image.shape == (3, 4, 5) and t["masks"].shape[1:] == (4, 5)
        assert t["masks"].shape[0] == t["labels"].shape[0]
        flipped += int(image[2, 0, 0] > image[2, 0, -1])
    assert 0 < flipped < 30


def test_resize_shortest_edge_multiscale():
    gen = torch.Generator().manual_seed(0)
    tr = ResizeShortestEdge([6, 12], max_size=100, generator=gen)
    seen = set()
    for _ in range(20):
        image, t = _coded_example()
        img2, t2 = tr(image, t)
        seen.add(tuple(img2.shape[1:]))
        assert t2["sem_seg"].shape == img2.shape[1:] == t2["masks"].shape[1:]
    assert seen == {(6, 8), (12, 16)}


def test_build_transforms_from_config(sample):
    cfg = get_config("shapes-tiny", ["data.crop_size=[100, 120]"])
    train = build_transforms(cfg, train=True)
    assert [type(t).__name__ for t in train.transforms] == [
        "ResizeShortestEdge",
        "RandomCrop",
        "RandomHorizontalFlip",
    ]
    test = build_transforms(cfg, train=False)
    ds = PanopticDataset(SAMPLE, transforms=test)
    image, t = ds[0]
    assert min(image.shape[1:]) == 128 and max(image.shape[1:]) <= 256
    assert t["sem_seg"].shape == image.shape[1:] == t["masks"].shape[1:] == t["crowd_masks"].shape[1:]
    assert (t["height"], t["width"]) == (427, 640)  # original size kept
    ds.transforms = train
    image, t = ds[1]
    assert image.shape[1:] == (100, 120) and t["sem_seg"].shape == (100, 120)
    assert all(bool(m.any()) for m in t["masks"])
