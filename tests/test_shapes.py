"""The synthetic ``shapes`` set: determinism, valid annotations, the properties it exists for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cfnet.categories import Categories
from cfnet.cli import main as cli_main
from cfnet.data import PanopticDataset, generate_shapes, save_sample_grid, shapes_statistics
from cfnet.data.shapes import STUFF_BOTTOM, STUFF_MIDDLE, STUFF_TOP
from cfnet.panoptic_io import read_panoptic_png, segment_bbox


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    generate_shapes(out, num_train=60, num_val=8, size=128, seed=0, progress=False)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        generate_shapes(tmp_path / name, num_train=5, num_val=3, size=128, seed=seed, progress=False)
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert len(a) == 2 * (5 + 3) + 2  # images + PNGs per split, one JSON per split
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.startswith("train/images"))
    assert a["train/panoptic.json"] != c["train/panoptic.json"]


def test_train_and_val_differ(shapes_dir):
    a = (shapes_dir / "train" / "images" / "000000.png").read_bytes()
    b = (shapes_dir / "val" / "images" / "000000.png").read_bytes()
    assert a != b


def test_annotations_are_valid(shapes_dir):
    shipped = Categories.from_spec("shapes")
    for split in ("train", "val"):
        ds = PanopticDataset(shapes_dir / split, categories=shipped)
        ds.validate(progress=False)  # ids in PNG == segments_info ids, sizes, files
        data = json.loads((shapes_dir / split / "panoptic.json").read_text())
        assert data["categories"] == json.loads(
            (Path(__file__).parents[1] / "cfnet/presets/categories/shapes.json").read_text()
        )
        for c in data["categories"]:
            assert set(c) >= {"id", "name", "isthing", "color", "supercategory"}
        for ann in data["annotations"]:
            ids = read_panoptic_png(shapes_dir / split / "panoptic" / ann["file_name"])
            assert ids.shape == (128, 128) and (ids > 0).all()  # no void in a synthetic image
            stuff = []
            for s in ann["segments_info"]:
                m = ids == s["id"]
                assert s["area"] == int(m.sum()) > 0
                assert s["bbox"] == segment_bbox(m)
                assert s["iscrowd"] == 0
                if s["category_id"] > 3:
                    stuff.append(s["category_id"])
                else:  # things: sqrt(area) <= 40 px at 128 px, >= 50 px visible; rotated squares'
                    # boxes reach 40·sqrt(2)
                    assert 50 <= s["area"] <= 40 * 40
                    assert max(s["bbox"][2:]) <= 58
            assert sorted(stuff) in ([STUFF_TOP, STUFF_BOTTOM], [STUFF_TOP, STUFF_MIDDLE, STUFF_BOTTOM])


def test_stuff_class_is_the_band_rank(shapes_dir):
    """Down every column the stuff classes come in order top -> middle -> bottom, and the same
    image row can hold different classes in different images (a small window cannot decide)."""
    ds = PanopticDataset(shapes_dir / "train")
    rows_seen = {c: set() for c in (STUFF_TOP, STUFF_MIDDLE, STUFF_BOTTOM)}
    for i in range(len(ds)):
        _, ids, segs = ds.load_panoptic(i)
        cat = np.zeros(ids.max() + 1, np.int64)
        for s in segs:
            cat[s["id"]] = s["category_id"]
        classes = cat[ids]
        for col in range(0, 128, 7):
            seq = [c for c in classes[:, col] if c > 3]
            assert seq == sorted(seq), (i, col)
        for c in rows_seen:
            rows_seen[c] |= set(np.nonzero((classes == c).any(1))[0].tolist())
    # every class occurs at mid-height somewhere: position alone does not decide the class
    for c, rows in rows_seen.items():
        assert {60, 64, 68} <= rows, c


def test_touching_same_class_instances_are_common(shapes_dir):
    stats = shapes_statistics(shapes_dir / "train")
    assert stats["images"] == 60
    assert stats["images_with_touching_same_class"] >= 0.5
    assert stats["things_touching_same_class"] >= 0.3
    assert 3 <= stats["things_per_image"] <= 10


def test_cli_and_grid(tmp_path):
    rc = cli_main(["data", "shapes", "--out", str(tmp_path / "d"), "--num-train", "3", "--num-val", "2",
                   "--size", "96", "--seed", "1", "--quiet", "--grid", str(tmp_path / "g.png")])  # fmt: skip
    assert rc == 0
    assert len(list((tmp_path / "d" / "train" / "images").glob("*.png"))) == 3
    assert len(PanopticDataset(tmp_path / "d", split="val")) == 2
    assert (tmp_path / "g.png").is_file()
    assert cli_main(["data", "shapes", "--out", str(tmp_path / "e"), "--size", "16", "--quiet"]) == 2


def test_sample_grid(shapes_dir, tmp_path):
    from PIL import Image

    out = save_sample_grid(shapes_dir / "val", tmp_path / "grid.png", num=8, columns=4, scale=1)
    w, h = Image.open(out).size
    assert (w, h) == (4 * 128 + 3 * 6, 2 * (2 * 128 + 2) + 6)


# ----------------------------------------------------------------------------------------------
# the hard variant


def _digest(root: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_standard_variant_bytes_are_unchanged_by_variants(tmp_path):
    # Digest of this exact call's output from the code before variants existed (commit 94e26c2):
    # adding the hard variant must not change a single byte of the standard set.
    generate_shapes(tmp_path / "s", num_train=4, num_val=2, size=96, seed=7, progress=False)
    assert _digest(tmp_path / "s") == "a0bc983928bd99df672e113e6b11426cdd45959060ed7bcd253b07db81eb8a68"


@pytest.fixture(scope="module")
def hard_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes-hard")
    generate_shapes(out, num_train=0, num_val=24, size=128, seed=0, progress=False, variant="hard")
    return out


def test_hard_variant_is_valid_and_deterministic(hard_dir, tmp_path):
    shipped = Categories.from_spec("shapes-hard")
    ds = PanopticDataset(hard_dir / "val", categories=shipped)
    ds.validate(progress=False)
    data = json.loads((hard_dir / "val" / "panoptic.json").read_text())
    assert data["info"]["variant"] == "hard"
    assert [c["name"] for c in data["categories"] if not c["isthing"]] == [
        "column-tag-red", "column-tag-green", "column-tag-blue"
    ]
    generate_shapes(
        tmp_path / "again", num_train=0, num_val=24, size=128, seed=0, progress=False, variant="hard"
    )
    assert _files(tmp_path / "again") == _files(hard_dir)
    with pytest.raises(ValueError, match="unknown shapes variant"):
        generate_shapes(tmp_path / "x", num_train=1, num_val=0, variant="nope")


def test_hard_variant_class_is_written_only_in_the_tag(hard_dir):
    """Every stuff column is one class from its tag down; the tag's hue says which; no thing covers a tag."""
    from PIL import Image

    from cfnet.data.shapes import TAG_HEIGHT

    data = json.loads((hard_dir / "val" / "panoptic.json").read_text())
    hue_of = {4: 0.0, 5: 1 / 3, 6: 2 / 3}  # column-tag-red / -green / -blue
    for ann in data["annotations"][:12]:
        ids = read_panoptic_png(hard_dir / "val" / "panoptic" / ann["file_name"])
        image = np.asarray(Image.open(hard_dir / "val" / "images" / ann["file_name"]).convert("RGB"), float)
        cat = {s["id"]: s["category_id"] for s in ann["segments_info"]}
        tag_rows = int(TAG_HEIGHT)
        top = ids[:tag_rows + 2]
        assert all(cat[i] in hue_of for i in np.unique(top))  # only stuff in (and just below) the tags
        for x in range(0, 128, 3):
            col_class = {cat[i] for i in ids[:, x] if cat[i] in hue_of}
            assert col_class == {cat[ids[0, x]]}  # one class along the whole column
            r, g, b = image[1:tag_rows - 1, x].mean(0)
            dominant = int(np.argmax([r, g, b]))  # red / green / blue tag
            assert dominant == [4, 5, 6].index(cat[ids[0, x]])


def test_hard_variant_has_lattice_crowds(hard_dir):
    stats = shapes_statistics(hard_dir / "val")
    assert stats["images_with_touching_same_class"] >= 0.8
    assert stats["things_touching_same_class"] >= 0.5
    assert stats["things_per_image"] >= 6


def test_data_shapes_cli_refuses_what_would_lose_or_mix_files(tmp_path, capsys):
    out = tmp_path / "set"
    assert cli_main(["data", "shapes", "--out", str(out), "--num-train", "2", "--num-val", "1", "-q"]) == 0
    before = _files(out)
    assert cli_main(["data", "shapes", "--out", str(out), "--num-train", "3", "--num-val", "1", "-q"]) == 2
    assert "not empty" in capsys.readouterr().out
    assert _files(out) == before  # nothing overwritten, nothing stale added
    empty = ["--num-train", "0", "--num-val", "0"]
    assert cli_main(["data", "shapes", "--out", str(tmp_path / "z"), *empty]) == 2
    assert "nothing to generate" in capsys.readouterr().out
    assert cli_main(["data", "shapes", "--out", str(tmp_path / "n"), "--seed", "-1"]) == 2
    assert "--seed" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    assert cli_main(["data", "shapes", "--out", str(tmp_path / "file"), "--num-train", "1"]) == 2
    assert "not a folder" in capsys.readouterr().out
