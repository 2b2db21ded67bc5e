"""The synthetic ``shapes`` panoptic benchmark and the ``cfnet data shapes`` command.

Writes ``DIR/train`` and ``DIR/val`` in the project's COCO-panoptic split layout (``images/``,
``panoptic/``, ``panoptic.json``; see :mod:`cfnet.data.panoptic`), byte-identical for a given seed
(every image draws from its own ``numpy`` generator seeded by ``(seed, split, index)``; PNGs are
written with fixed settings; the JSON has no time stamp).

Design — each property is there to make one of the paper's modules matter (docs/shapes.md):

* **Things** (circle, square, triangle; 12–40 px at 128 px, scaled with ``size``), rotated at
  random, in a random saturated colour: the class is the *shape*, never the colour. In about two
  images out of three, a **cluster** of 2–4 instances of the *same class and the same colour*
  touch or overlap (occluding each other, each keeping ≥ 55 % of its area). A 1-px dark outline
  keeps every instance boundary visible, so the task is well posed, but the instances are locally
  identical: telling them apart needs position-sensitive features — the job of the ICM (Eqs. 10–11)
  and of SOLOv2's CoordConv it replaces.
* **Stuff** is 2 or 3 horizontal **bands** with wavy, tilted borders, every band filled with the
  same kind of texture: stripes of a random orientation (0°, 45°, 90°, 135°), period and muted
  colour pair, adjacent bands differing so their border is visible. The class is the band's
  *rank*: ``stripes-top`` (no border above), ``stripes-middle`` (borders above and below),
  ``stripes-bottom`` (no border below). Borders are drawn at random heights, so the same pixel
  row can be any of the three classes, and a small window inside a band — any texture, any
  colour — cannot tell them apart; deciding needs the whole column, i.e. long-range context: the
  job of the SCM (Eqs. 8–9), whose axial form aggregates exactly along rows and columns.
* Horizontal flips change no class (shapes are mirror-symmetric classes; the rank of a band does
  not depend on left/right; the orientation set is closed under mirroring). Vertical flips and
  crops that cut a band's borders away *would* change stuff classes: do not use them on this set.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cfnet.categories import Categories, load_category_records
from cfnet.panoptic_io import (
    PNG_SAVE_KWARGS,
    adjacent_segment_pairs,
    colorize_panoptic,
    dump_json,
    read_panoptic_png,
    segment_areas,
    segment_bbox,
    write_panoptic_png,
)

CIRCLE, SQUARE, TRIANGLE = 1, 2, 3  # category ids (cfnet/presets/categories/shapes.json)
STUFF_TOP, STUFF_MIDDLE, STUFF_BOTTOM = 4, 5, 6
_SPLIT_CODES = {"train": 0, "val": 1}

# Geometry at the reference size of 128 px; everything scales with size / 128.
MIN_EXTENT, MAX_EXTENT = 12.0, 40.0  # thing diameter / side
MIN_VISIBLE_FRACTION = 0.55  # an occluded thing keeps at least this share of its own area
MIN_VISIBLE_AREA = 50.0  # ... and at least this many pixels
CLUSTER_PROB = 0.65  # images with at least one touching same-class cluster
NOISE_SIGMA = 3.0  # pixel noise (0-255 scale)


def shapes_categories() -> list[dict]:
    """The category records of the set (ids 1-3 things, 4-6 stuff)."""
    return load_category_records("shapes")


# ----------------------------------------------------------------------------------------------
# drawing (vectorised over a window around each shape)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.asarray(rgb) * 255.0


def _bounding_radius(kind: int, extent: float) -> float:
    if kind == CIRCLE:
        return extent / 2
    if kind == SQUARE:
        return extent / math.sqrt(2)
    return extent * 1.2 / math.sqrt(3)  # triangle: side 1.2·extent (its area would be small otherwise)


def _shape_mask(kind: int, cx: float, cy: float, extent: float, angle: float, size: int) -> np.ndarray:
    """Full-size boolean mask of one shape (pixel centres inside the shape)."""
    r = _bounding_radius(kind, extent)
    x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, size)
    y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, size)
    dx = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5 - cx
    dy = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5 - cy
    if kind == CIRCLE:
        inside = dx * dx + dy * dy <= r * r
    elif kind == SQUARE:
        c, s = math.cos(angle), math.sin(angle)
        half = extent / 2
        inside = (np.abs(dx * c + dy * s) <= half) & (np.abs(-dx * s + dy * c) <= half)
    else:  # triangle: inside all three edge half-planes (inward normals at angle + 60° + k·120°)
        inradius = r / 2
        inside = np.ones((y1 - y0, x1 - x0), bool)
        for k in range(3):
            a = angle + math.pi / 3 + k * 2 * math.pi / 3
            inside &= dx * math.cos(a) + dy * math.sin(a) <= inradius
    mask = np.zeros((size, size), bool)
    mask[y0:y1, x0:x1] = inside
    return mask


def _touches(a: np.ndarray, b: np.ndarray) -> bool:
    """Do two disjoint boolean masks share a pixel edge?"""
    return bool(
        (a[:, 1:] & b[:, :-1]).any()
        | (a[:, :-1] & b[:, 1:]).any()
        | (a[1:, :] & b[:-1, :]).any()
        | (a[:-1, :] & b[1:, :]).any()
    )


class _Canvas:
    """Things drawn back to front; keeps each instance's full and visible area."""

    def __init__(self, size: int):
        self.size = size
        self.scale = size / 128.0
        self.inst = np.zeros((size, size), np.int32)  # 1-based instance index, 0 = background
        self.kinds: list[int] = []
        self.colors: list[np.ndarray] = []
        self.full_areas: list[int] = []

    def try_add(self, kind: int, color: np.ndarray, mask: np.ndarray) -> bool:
        """Draw on top if every instance stays visible enough; otherwise leave the canvas unchanged."""
        area = int(mask.sum())
        if area < MIN_VISIBLE_AREA * self.scale**2:
            return False
        new = self.inst.copy()
        new[mask] = len(self.kinds) + 1
        visible = np.bincount(new.ravel(), minlength=len(self.kinds) + 2)[1:]
        for i, full in enumerate(self.full_areas):
            if visible[i] < max(MIN_VISIBLE_FRACTION * full, MIN_VISIBLE_AREA * self.scale**2):
                return False
        self.inst = new
        self.kinds.append(kind)
        self.colors.append(color)
        self.full_areas.append(area)
        return True


def _random_shape(
    rng: np.random.Generator, size: int, kind: int, extent: float, center=None, top: float = 0.0
) -> np.ndarray:
    r = _bounding_radius(kind, extent)
    if center is None:
        center = rng.uniform((r + 1, r + 1 + top), (size - r - 1, size - r - 1), size=2)
    return _shape_mask(
        kind, float(center[0]), float(center[1]), extent, float(rng.uniform(0, 2 * math.pi)), size
    )


def _thing_color(rng: np.random.Generator) -> np.ndarray:
    return _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.65, 1.0), rng.uniform(0.75, 1.0))


def _draw_things(rng: np.random.Generator, size: int) -> _Canvas:
    canvas = _Canvas(size)
    s = canvas.scale
    n_total = int(rng.integers(3, 11))
    clusters = []
    if rng.random() < CLUSTER_PROB:
        clusters.append(int(rng.integers(2, 5)))
        if rng.random() < 0.4:
            clusters.append(int(rng.integers(2, 4)))
    for n_members in clusters:
        kind = int(rng.integers(1, 4))
        color = _thing_color(rng)
        base = rng.uniform(MIN_EXTENT * 1.1, MAX_EXTENT * 0.8) * s
        members: list[int] = []
        for _ in range(20):  # the seed of the cluster
            ext = float(np.clip(base * rng.uniform(0.85, 1.15), MIN_EXTENT * s, MAX_EXTENT * s))
            if canvas.try_add(kind, color, _random_shape(rng, size, kind, ext)):
                members.append(len(canvas.kinds))
                break
        if not members:
            continue
        for _ in range(n_members - 1):
            for _ in range(30):  # next to (touching or overlapping) a random member
                ext = float(np.clip(base * rng.uniform(0.85, 1.15), MIN_EXTENT * s, MAX_EXTENT * s))
                anchor = members[int(rng.integers(len(members)))]
                ys, xs = np.nonzero(canvas.inst == anchor)
                ac = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
                r_new = _bounding_radius(kind, ext)
                a_ext = math.sqrt(canvas.full_areas[anchor - 1]) * 0.6
                phi = rng.uniform(0, 2 * math.pi)
                dist = (a_ext + ext * 0.5) * rng.uniform(0.75, 1.05)
                c = ac + dist * np.array([math.cos(phi), math.sin(phi)])
                if not (r_new + 1 <= c[0] <= size - r_new - 1 and r_new + 1 <= c[1] <= size - r_new - 1):
                    continue
                mask = _random_shape(rng, size, kind, ext, center=c)
                # it must touch (or overlap) some member of its own cluster
                member_px = np.isin(canvas.inst, members)
                if not ((mask & member_px).any() or _touches(mask, member_px)):
                    continue
                if canvas.try_add(kind, color, mask):
                    members.append(len(canvas.kinds))
                    break
    while len(canvas.kinds) < n_total:
        for _ in range(20):
            kind = int(rng.integers(1, 4))
            ext = rng.uniform(MIN_EXTENT, MAX_EXTENT) * s
            if canvas.try_add(kind, _thing_color(rng), _random_shape(rng, size, kind, ext)):
                break
        else:
            break  # the image is full
    return canvas


def _draw_bands(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Background picture (H, W, 3) float, band index per pixel, and the category id of each band."""
    n_bands = 3 if rng.random() < 0.5 else 2
    x = np.arange(size, dtype=np.float64) + 0.5
    for _ in range(100):  # random wavy borders that keep the bands apart
        if n_bands == 2:
            bases = [rng.uniform(0.25, 0.75)]
        else:
            b1 = rng.uniform(0.18, 0.45)
            bases = [b1, min(b1 + rng.uniform(0.25, 0.5), 0.82)]
        curves = []
        for b in bases:
            slope = rng.uniform(-0.15, 0.15)
            amp = rng.uniform(0.0, 0.04) * size
            freq, phase = rng.uniform(0.5, 2.0), rng.uniform(0, 2 * math.pi)
            curves.append(
                b * size + slope * (x - size / 2) + amp * np.sin(2 * math.pi * freq * x / size + phase)
            )
        lo, hi = 0.08 * size, 0.92 * size
        ok = all(c.min() >= lo and c.max() <= hi for c in curves)
        if n_bands == 3:
            ok = ok and (curves[1] - curves[0]).min() >= 0.15 * size
        if ok:
            break
    y = (np.arange(size, dtype=np.float64) + 0.5)[:, None]
    band = np.zeros((size, size), np.int64)
    for c in curves:
        band += y > c[None, :]
    classes = [STUFF_TOP, STUFF_BOTTOM] if n_bands == 2 else [STUFF_TOP, STUFF_MIDDLE, STUFF_BOTTOM]
    return _paint_stripes(rng, band, n_bands, size), band, classes


def _paint_stripes(rng: np.random.Generator, region: np.ndarray, n_regions: int, size: int) -> np.ndarray:
    """Fill each region with stripes of its own random orientation, period and muted colour pair;
    consecutive regions differ in orientation and hue, so the border between them shows."""
    x = np.arange(size, dtype=np.float64) + 0.5
    y = (np.arange(size, dtype=np.float64) + 0.5)[:, None]
    # one pass over the image: per-pixel stripe parameters looked up from the pixel's region
    palette = np.zeros((2 * n_regions, 3), np.float32)
    fx, fy, ph = (np.zeros(n_regions, np.float32) for _ in range(3))
    prev_orient, prev_hue = -1, -1.0
    scale = size / 128.0
    for k in range(n_regions):
        orient = int(rng.choice([o for o in range(4) if o != prev_orient]))
        hue = rng.uniform(0, 1)
        while prev_hue >= 0 and min(abs(hue - prev_hue), 1 - abs(hue - prev_hue)) < 0.15:
            hue = rng.uniform(0, 1)
        prev_orient, prev_hue = orient, hue
        sat = rng.uniform(0.1, 0.35)
        palette[2 * k] = _hsv_to_rgb(hue, sat, rng.uniform(0.25, 0.45))  # dark stripe
        palette[2 * k + 1] = _hsv_to_rgb(hue, sat, rng.uniform(0.55, 0.75))  # light stripe
        period = float(rng.choice([5.0, 7.0, 9.0])) * scale
        theta = orient * math.pi / 4
        fx[k], fy[k], ph[k] = math.cos(theta) / period, math.sin(theta) / period, rng.uniform(0, 1)
    xx = x[None, :].astype(np.float32)
    yy = y.astype(np.float32)
    light = ((xx * fx[region] + yy * fy[region] + ph[region]) % 1.0) < 0.5
    return palette[2 * region + light]


# ----------------------------------------------------------------------------------------------
# the `hard` variant (docs/shapes.md): tagged columns and lattice crowds

TAG_HEIGHT = 8.0  # rows of the tag at each column's top end (at 128 px)
COLUMN_WIDTH = (6.0, 14.0)  # column widths (at 128 px)
TAG_HUES = {STUFF_TOP: 0.0, STUFF_MIDDLE: 1 / 3, STUFF_BOTTOM: 2 / 3}  # red, green, blue tags
CROWD_PROB = 0.9  # images with at least one lattice crowd
CROWD_EXTENT = (13.0, 18.0)  # extent of the (identical) members of a crowd (at 128 px)


def _draw_columns(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Thin vertical columns whose class is written only in a tag at their top end.

    Every column body has stripes of a random orientation, period and muted colour pair,
    independent of its class; the class (one of the three stuff ids, uniformly at random per
    column) shows only as the hue of the tag (red / green / blue) in the top ``TAG_HEIGHT`` rows.
    Returns the picture, the class index (0..2) per pixel and the three stuff ids, so every class
    is one segment, however many columns it has.
    """
    scale = size / 128.0
    edges = [0]
    while edges[-1] < size:
        edges.append(edges[-1] + max(2, int(round(rng.uniform(*COLUMN_WIDTH) * scale))))
    edges[-1] = size
    if edges[-1] - edges[-2] < 3 * scale and len(edges) > 2:  # no sliver at the right border
        del edges[-2]
    n_cols = len(edges) - 1
    col_of_x = np.zeros(size, np.int64)
    for k in range(n_cols):
        col_of_x[edges[k] : edges[k + 1]] = k
    column = np.broadcast_to(col_of_x[None, :], (size, size))
    picture = _paint_stripes(rng, np.ascontiguousarray(column), n_cols, size)
    stuff_ids = [STUFF_TOP, STUFF_MIDDLE, STUFF_BOTTOM]
    col_class = rng.integers(0, 3, size=n_cols)
    tag_rows = int(round(TAG_HEIGHT * scale))
    for k in range(n_cols):
        hue = (TAG_HUES[stuff_ids[col_class[k]]] + rng.uniform(-0.04, 0.04)) % 1.0
        tag = _hsv_to_rgb(hue, rng.uniform(0.85, 1.0), rng.uniform(0.75, 1.0))
        picture[:tag_rows, edges[k] : edges[k + 1]] = tag
    return picture, col_class[column], stuff_ids


def _draw_crowds(rng: np.random.Generator, size: int) -> _Canvas:
    """One or two lattice crowds of identical touching things, then a few random singletons.

    A crowd is a 1×3..4 or 2×2..4 lattice of things of one class, one colour, one size and one
    rotation, each touching or overlapping its lattice neighbours, centred in the middle 40 % of
    the area below the tags: inside a crowd the members look the same locally and relative to
    their neighbours, so only where a pixel is tells them apart.
    """
    canvas = _Canvas(size)
    s = canvas.scale
    top = (TAG_HEIGHT + 2) * s  # things never cover the column tags
    n_crowds = 0
    if rng.random() < CROWD_PROB:
        n_crowds = 2 if rng.random() < 0.5 else 1
    for _ in range(n_crowds):
        kind = int(rng.integers(1, 4))
        color = _thing_color(rng)
        ext = rng.uniform(*CROWD_EXTENT) * s
        angle = float(rng.uniform(0, 2 * math.pi))
        rows = int(rng.integers(1, 3))
        cols = int(rng.integers(3, 5)) if rows == 1 else int(rng.integers(2, 5))
        # lattice step along the shapes' own axes: neighbours touch or overlap slightly
        step = {CIRCLE: 0.92 * ext, SQUARE: 0.97 * ext, TRIANGLE: 0.8 * 1.2 * ext}[kind]
        c, sn = math.cos(angle), math.sin(angle)
        if kind == CIRCLE:
            c, sn = 1.0, 0.0
        centre = np.array(
            [rng.uniform(0.3, 0.7) * size, top + rng.uniform(0.3, 0.7) * (size - top)]
        )
        members: list[int] = []
        for i in range(rows):
            for j in range(cols):
                u, v = (j - (cols - 1) / 2) * step, (i - (rows - 1) / 2) * step
                pos = centre + np.array([u * c - v * sn, u * sn + v * c]) + rng.uniform(-0.5, 0.5, 2)
                r = _bounding_radius(kind, ext)
                if not (r + 1 <= pos[0] <= size - r - 1 and top + r + 1 <= pos[1] <= size - r - 1):
                    continue
                mask = _shape_mask(kind, float(pos[0]), float(pos[1]), ext, angle, size)
                if members:
                    member_px = np.isin(canvas.inst, members)
                    if not ((mask & member_px).any() or _touches(mask, member_px)):
                        continue
                if canvas.try_add(kind, color, mask):
                    members.append(len(canvas.kinds))
    n_single = int(rng.integers(1, 5))
    for _ in range(n_single):
        for _ in range(20):
            kind = int(rng.integers(1, 4))
            ext = rng.uniform(MIN_EXTENT, MAX_EXTENT) * s
            if canvas.try_add(kind, _thing_color(rng), _random_shape(rng, size, kind, ext, top=top)):
                break
    return canvas


# Each variant: (background drawer, thing drawer, category set name).
VARIANTS = {
    "standard": (_draw_bands, _draw_things, "shapes"),
    "hard": (_draw_columns, _draw_crowds, "shapes-hard"),
}


def render_shapes_image(
    rng: np.random.Generator, size: int, variant: str = "standard"
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """One sample: ``(image (S, S, 3) uint8, segment ids (S, S) int64, segments_info)``."""
    draw_background, draw_things, _ = VARIANTS[variant]
    picture, band, band_classes = draw_background(rng, size)
    canvas = draw_things(rng, size)
    inst = canvas.inst
    # things: flat colour with a dark 1-px outline on every visible boundary (touching ones included)
    edge = np.zeros_like(inst, bool)
    edge[:, 1:] |= inst[:, 1:] != inst[:, :-1]
    edge[:, :-1] |= inst[:, :-1] != inst[:, 1:]
    edge[1:, :] |= inst[1:, :] != inst[:-1, :]
    edge[:-1, :] |= inst[:-1, :] != inst[1:, :]
    if canvas.kinds:
        colors = np.stack(canvas.colors)
        thing = inst > 0
        picture[thing] = colors[inst[thing] - 1]
        outline = thing & edge
        picture[outline] *= 0.45
    picture += NOISE_SIGMA * rng.standard_normal(picture.shape, dtype=np.float32)
    image = np.clip(np.rint(picture), 0, 255).astype(np.uint8)

    # segment ids: bands first (1..n_bands), then things in drawing order
    ids = np.where(inst > 0, 0, band + 1).astype(np.int64)
    n_bands = len(band_classes)
    ids[inst > 0] = inst[inst > 0] + n_bands
    areas = segment_areas(ids)
    segments = []
    for seg_id in sorted(areas):
        cat = band_classes[seg_id - 1] if seg_id <= n_bands else canvas.kinds[seg_id - n_bands - 1]
        segments.append(
            {
                "id": seg_id,
                "category_id": cat,
                "iscrowd": 0,
                "area": areas[seg_id],
                "bbox": segment_bbox(ids == seg_id),
            }
        )
    return image, ids, segments


# ----------------------------------------------------------------------------------------------
# writing


def _write_split(
    out: Path,
    split: str,
    num: int,
    size: int,
    seed: int,
    categories: list[dict],
    progress: bool,
    variant: str = "standard",
) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "panoptic").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in tqdm(range(num), desc=f"shapes {split}", disable=not progress, unit="img"):
        rng = np.random.default_rng([seed, _SPLIT_CODES[split], i])
        image, ids, segments = render_shapes_image(rng, size, variant)
        name = f"{i:06d}.png"
        # noisy pictures barely compress better at higher levels, which cost twice the time
        Image.fromarray(image, mode="RGB").save(
            out / "images" / name, **dict(PNG_SAVE_KWARGS, compress_level=1)
        )
        write_panoptic_png(out / "panoptic" / name, ids)
        images.append({"id": i + 1, "file_name": name, "height": size, "width": size})
        annotations.append({"image_id": i + 1, "file_name": name, "segments_info": segments})
    info = {
        "description": "cfnet synthetic shapes panoptic benchmark",
        "version": "1",
        "split": split,
        "seed": seed,
        "size": size,
    }
    if variant != "standard":  # the standard set's bytes stay as they were before variants existed
        info["variant"] = variant
    dump_json(
        {
            "info": info,
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        },
        out / "panoptic.json",
    )


def generate_shapes(
    out_dir: str | os.PathLike,
    num_train: int = 2000,
    num_val: int = 200,
    size: int = 128,
    seed: int = 0,
    progress: bool = True,
    variant: str = "standard",
) -> dict[str, Path]:
    """Write ``out_dir/train`` and ``out_dir/val`` (see the module docstring); returns their paths.

    ``variant`` is ``standard`` (bands and clusters) or ``hard`` (tagged columns and lattice
    crowds, category set ``shapes-hard``; docs/shapes.md says what each needs). Same arguments ->
    the same bytes. A split with 0 images is not written.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown shapes variant {variant!r}; variants: {', '.join(VARIANTS)}")
    if size < 48:
        raise ValueError(f"size must be at least 48 px (things are 12-40 px at 128 px), got {size}")
    if num_train < 0 or num_val < 0:
        raise ValueError(f"num_train and num_val must be >= 0, got {num_train}, {num_val}")
    out = Path(out_dir)
    categories = load_category_records(VARIANTS[variant][2])
    paths = {}
    for split, num in (("train", num_train), ("val", num_val)):
        if num > 0:
            _write_split(out / split, split, num, size, seed, categories, progress, variant)
            paths[split] = out / split
    return paths


# ----------------------------------------------------------------------------------------------
# statistics and pictures


def shapes_statistics(split_dir: str | os.PathLike) -> dict[str, float]:
    """Instance-discrimination statistics of a split (any COCO-panoptic split works):
    share of images with at least one pair of touching same-class things, share of things that touch
    a same-class thing, things per image, smallest and largest thing extent (sqrt of the area)."""
    from cfnet.data.panoptic import load_panoptic_json, resolve_split

    _, png_dir, json_path = resolve_split(split_dir)
    data = load_panoptic_json(json_path)
    things = {c["id"] for c in data["categories"] if c["isthing"]}
    n_img = n_img_touch = n_things = n_things_touch = 0
    extents = []
    for ann in data["annotations"]:
        ids = read_panoptic_png(png_dir / ann["file_name"])
        cat = {s["id"]: s["category_id"] for s in ann["segments_info"]}
        touching = set()
        for a, b in adjacent_segment_pairs(ids):
            if cat[a] == cat[b] and cat[a] in things:
                touching |= {a, b}
        thing_ids = [s["id"] for s in ann["segments_info"] if s["category_id"] in things]
        extents += [math.sqrt(s["area"]) for s in ann["segments_info"] if s["category_id"] in things]
        n_img += 1
        n_img_touch += bool(touching)
        n_things += len(thing_ids)
        n_things_touch += len(touching)
    return {
        "images": n_img,
        "images_with_touching_same_class": n_img_touch / max(n_img, 1),
        "things_touching_same_class": n_things_touch / max(n_things, 1),
        "things_per_image": n_things / max(n_img, 1),
        "min_thing_extent": min(extents, default=0.0),
        "max_thing_extent": max(extents, default=0.0),
    }


def save_sample_grid(
    split_dir: str | os.PathLike, out_path: str | os.PathLike, num: int = 8, columns: int = 4, scale: int = 2
) -> Path:
    """A PNG grid of the first ``num`` samples: each cell the image above its panoptic ground truth
    (stuff in its class colour, every thing instance its own shade, segment borders dark)."""
    from cfnet.data.panoptic import PanopticDataset

    ds = PanopticDataset(split_dir)
    cats: Categories = ds.categories
    cells = []
    for i in range(min(num, len(ds))):
        image, ids, segments = ds.load_panoptic(i)
        gt = colorize_panoptic(ids, segments, cats)
        cells.append(np.concatenate([image, np.full((2, image.shape[1], 3), 255, np.uint8), gt], axis=0))
    if not cells:
        raise ValueError(f"{split_dir}: no samples to draw")
    h, w = cells[0].shape[:2]
    gap = 6
    rows = math.ceil(len(cells) / columns)
    grid = np.full((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, 3), 255, np.uint8)
    for k, cell in enumerate(cells):
        r, c = divmod(k, columns)
        grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = cell
    if scale > 1:
        grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out_path, format="PNG", optimize=True)
    return out_path


# ----------------------------------------------------------------------------------------------
# command line: cfnet data shapes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder; DIR/train and DIR/val are written")
    parser.add_argument("--num-train", type=int, default=2000, help="training images (default 2000)")
    parser.add_argument("--num-val", type=int, default=200, help="validation images (default 200)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; same seed -> same bytes (default 0)"
    )
    parser.add_argument(
        "--variant",
        default="standard",
        choices=sorted(VARIANTS),
        help="standard: bands + clusters; hard: tagged columns + lattice crowds (docs/shapes.md)",
    )
    parser.add_argument("--grid", default=None, help="also write a PNG grid of validation samples here")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _check_arguments(args: argparse.Namespace) -> str | None:
    """The first thing wrong with the arguments, as a sentence naming the option; None if fine."""
    if args.num_train < 0 or args.num_val < 0:
        return f"--num-train and --num-val must be >= 0, got {args.num_train} and {args.num_val}"
    if args.num_train == 0 and args.num_val == 0:
        return "--num-train and --num-val are both 0: nothing to generate"
    if args.seed < 0:
        return f"--seed must be >= 0, got {args.seed}"
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        return f"--out {out}: exists and is not a folder"
    if out.is_dir() and any(out.iterdir()):
        # Writing over a set would leave stale images and could pair an old val with a new train split.
        return f"--out {out}: folder is not empty; remove it first or choose another --out"
    return None


def main(args: argparse.Namespace) -> int:
    problem = _check_arguments(args)
    if problem is not None:
        print(f"cfnet data shapes: {problem}")
        return 2
    try:
        paths = generate_shapes(
            args.out,
            args.num_train,
            args.num_val,
            args.size,
            args.seed,
            progress=not args.quiet,
            variant=args.variant,
        )
    except ValueError as e:
        print(f"cfnet data shapes: {e}")
        return 2
    except OSError as e:
        print(f"cfnet data shapes: cannot write {args.out}: {e.strerror or e}")
        return 2
    for split, p in paths.items():
        stats = shapes_statistics(p)
        print(
            f"{split}: {p}  {stats['images']} images, {stats['things_per_image']:.1f} things/image, "
            f"{100 * stats['images_with_touching_same_class']:.0f}% of images with touching same-class things"
        )
    if args.grid:
        src = paths.get("val") or paths.get("train")
        if src is not None:
            print(f"sample grid: {save_sample_grid(src, args.grid)}")
    return 0
