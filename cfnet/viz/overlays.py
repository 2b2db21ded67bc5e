"""Panoptic overlays, semantic colour maps and segment highlights: numpy and Pillow only.

Used by ``cfnet predict``, the demo (``app/``) and the notebooks (no torch, no plotly, no gradio).

Colours. Every segment gets one colour. *Stuff* is drawn in its category colour, semi-transparent
with thin dark outlines; *things* in a shade of their category colour that differs per instance
(the k-th instance of a category gets the k-th shade of a fixed, deterministic sequence: the
first is the category colour itself, the next ones lighter, darker or slightly hue-shifted
versions, each as far as possible from those before it), more opaque and with white outlines, so
touching instances of one category never share a colour and things stand out from stuff.
"""

from __future__ import annotations

import colorsys
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "segment_colors",
    "panoptic_overlay",
    "semantic_color_map",
    "highlight_segment",
    "boundaries",
]

_THING_ALPHA_BOOST = 0.15


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be an H×W×3 RGB array, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}")
    return image


def _check_seg(panoptic_seg: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    if hasattr(panoptic_seg, "detach"):  # a torch tensor, without importing torch
        panoptic_seg = panoptic_seg.detach().cpu().numpy()
    seg = np.asarray(panoptic_seg)
    if seg.ndim != 2:
        raise ValueError(f"panoptic_seg must be an H×W id map, got shape {seg.shape}")
    if shape is not None and seg.shape != tuple(shape):
        raise ValueError(f"panoptic_seg has shape {seg.shape} but the image is {tuple(shape)}")
    return seg.astype(np.int64, copy=False)


@functools.lru_cache(maxsize=512)
def _shades(color: tuple[int, int, int]) -> tuple[tuple[int, int, int], ...]:
    """Distinct shades of ``color``, in the order instances use them (the first is ``color``).

    Candidates vary lightness (0.2..0.85), hue (±0.05) and saturation (×0.6..1) of the colour in
    HLS; each next shade is the candidate farthest (in RGB) from the shades already chosen
    (farthest-point sampling), so any two of the first few are far apart and the sequence is
    deterministic.
    """
    r, g, b = (v / 255.0 for v in color)
    hue, _, sat = colorsys.rgb_to_hls(r, g, b)
    cands = []
    for lightness in np.linspace(0.2, 0.85, 11):
        for dh in (-0.05, -0.025, 0.0, 0.025, 0.05):
            for s in (0.6, 0.8, 1.0):
                rgb = colorsys.hls_to_rgb((hue + dh) % 1.0, float(lightness), sat * s)
                cands.append([round(v * 255) for v in rgb])
    cand = np.asarray(cands, dtype=np.float64)
    chosen = [np.asarray(color, dtype=np.float64)]
    dist = np.linalg.norm(cand - chosen[0], axis=1)
    order = [tuple(int(v) for v in color)]
    for _ in range(len(cand) - 1):
        i = int(dist.argmax())
        if dist[i] <= 0:
            break
        order.append(tuple(int(v) for v in cand[i]))
        dist = np.minimum(dist, np.linalg.norm(cand - cand[i], axis=1))
    return tuple(order)  # type: ignore[return-value]


def _shade(color: Sequence[int], k: int) -> tuple[int, int, int]:
    """The k-th instance shade of ``color`` (k = 0: the colour itself); cycles when exhausted."""
    shades = _shades(tuple(int(v) for v in color))
    return shades[k % len(shades)]


def segment_colors(segments_info: Sequence[dict], categories: Any) -> dict[int, tuple[int, int, int]]:
    """``{segment id: RGB}``: stuff in its category colour, things in per-instance shades."""
    colors: dict[int, tuple[int, int, int]] = {}
    seen: dict[int, int] = {}
    for seg in segments_info:
        cat = categories.contiguous(seg["category_id"])
        base = categories.color(cat)
        if _is_thing(seg, categories):
            k = seen.get(cat, 0)
            seen[cat] = k + 1
            colors[int(seg["id"])] = _shade(base, k)
        else:
            colors[int(seg["id"])] = tuple(int(v) for v in base)  # type: ignore[assignment]
    return colors


def _is_thing(seg: dict, categories: Any) -> bool:
    if "isthing" in seg:
        return bool(seg["isthing"])
    return bool(categories.is_thing(categories.contiguous(seg["category_id"])))


def boundaries(seg: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Boolean H×W mask of pixels whose 4-neighbour carries another id, grown to ``thickness``."""
    seg = np.asarray(seg)
    edge = np.zeros(seg.shape, dtype=bool)
    diff_v = seg[1:, :] != seg[:-1, :]
    diff_h = seg[:, 1:] != seg[:, :-1]
    edge[1:, :] |= diff_v
    edge[:-1, :] |= diff_v
    edge[:, 1:] |= diff_h
    edge[:, :-1] |= diff_h
    for _ in range(max(0, int(thickness) - 1)):
        grown = edge.copy()
        grown[1:, :] |= edge[:-1, :]
        grown[:-1, :] |= edge[1:, :]
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        edge = grown
    return edge


def _outline_thickness(shape: tuple[int, ...]) -> int:
    return max(1, int(round(max(shape[:2]) / 400)))


def panoptic_overlay(
    image: np.ndarray,
    panoptic_seg: Any,
    segments_info: Sequence[dict],
    categories: Any,
    alpha: float = 0.5,
    outlines: bool = True,
) -> np.ndarray:
    """The image with every segment painted in its colour (see the module docstring): uint8 H×W×3.

    ``panoptic_seg`` is an H×W id map (0 = void, left unpainted) matching ``image``;
    ``segments_info`` the model's records (``id``, ``category_id``, ``isthing``). Things are painted
    slightly more opaque than stuff and outlined in white, stuff in dark grey.
    """
    image = _check_image(image)
    seg = _check_seg(panoptic_seg, image.shape[:2])
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    colors = segment_colors(segments_info, categories)
    out = image.astype(np.float64)
    color_img = np.zeros_like(out)
    alpha_img = np.zeros(seg.shape, dtype=np.float64)
    thing_ids = []
    for s in segments_info:
        sid = int(s["id"])
        mask = seg == sid
        if not mask.any():
            continue
        color_img[mask] = colors[sid]
        thing = _is_thing(s, categories)
        alpha_img[mask] = min(1.0, alpha + _THING_ALPHA_BOOST) if thing else alpha
        if thing:
            thing_ids.append(sid)
    a = alpha_img[..., None]
    out = out * (1 - a) + color_img * a
    if outlines:
        t = _outline_thickness(seg.shape)
        edge = boundaries(seg, t)
        out[edge] = (40, 40, 40)
        if thing_ids:
            thing_edge = edge & np.isin(seg, thing_ids)
            out[thing_edge] = (255, 255, 255)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def semantic_color_map(
    sem_seg: Any,
    categories: Any,
    image: np.ndarray | None = None,
    alpha: float = 0.6,
    ignore_index: int = 255,
) -> np.ndarray:
    """Colour map of a semantic prediction: uint8 H×W×3, each pixel in its category colour.

    ``sem_seg`` is either C×H×W scores/probabilities over the contiguous ids (argmax taken) or an
    H×W map of contiguous ids (``ignore_index`` drawn black). With ``image``, the colours are
    blended over it with ``alpha`` and class boundaries outlined.
    """
    if hasattr(sem_seg, "detach"):
        sem_seg = sem_seg.detach().float().cpu().numpy()
    sem = np.asarray(sem_seg)
    if sem.ndim == 3:
        if sem.shape[0] != len(categories):
            raise ValueError(
                f"sem_seg has {sem.shape[0]} channels but the category set has {len(categories)} classes"
            )
        labels = sem.argmax(axis=0)
    elif sem.ndim == 2:
        labels = sem.astype(np.int64)
    else:
        raise ValueError(f"sem_seg must be C×H×W scores or an H×W label map, got shape {sem.shape}")
    palette = np.zeros((256, 3), dtype=np.float64)
    for i in range(min(len(categories), 255)):
        palette[i] = categories.color(i)
    labels = np.where((labels < 0) | (labels >= len(categories)), ignore_index, labels)
    colored = palette[np.clip(labels, 0, 255)]
    if image is None:
        return colored.astype(np.uint8)
    image = _check_image(image)
    if image.shape[:2] != labels.shape:
        raise ValueError(f"sem_seg is {labels.shape} but the image is {image.shape[:2]}")
    out = image.astype(np.float64) * (1 - alpha) + colored * alpha
    out[boundaries(labels, _outline_thickness(labels.shape))] = (40, 40, 40)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def highlight_segment(
    image: np.ndarray,
    panoptic_seg: Any,
    segment_id: int | None,
    point: tuple[int, int] | None = None,
    dim: float = 0.55,
) -> np.ndarray:
    """Emphasise one segment of a (usually already overlaid) image: uint8 H×W×3.

    Pixels outside segment ``segment_id`` are darkened by ``dim``, the segment is outlined in
    yellow, and ``point = (row, col)`` (the clicked pixel) is marked with a cross. With
    ``segment_id`` ``None`` or 0 (void), only the cross is drawn.
    """
    image = _check_image(image)
    seg = _check_seg(panoptic_seg, image.shape[:2])
    out = image.astype(np.float64)
    if segment_id:
        mask = seg == int(segment_id)
        out[~mask] *= 1.0 - dim
        t = _outline_thickness(seg.shape) + 1
        edge = boundaries(mask.astype(np.int8), t) & mask
        out[edge] = (255, 230, 0)
    if point is not None:
        _draw_cross(out, point, max(4, int(round(max(seg.shape) / 60))))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _draw_cross(img: np.ndarray, point: tuple[int, int], radius: int) -> None:
    h, w = img.shape[:2]
    r, c = int(point[0]), int(point[1])
    t = max(1, radius // 4)
    for color, grow in (((0, 0, 0), 1), ((255, 255, 255), 0)):
        r0, r1 = max(0, r - radius - grow), min(h, r + radius + grow + 1)
        c0, c1 = max(0, c - radius - grow), min(w, c + radius + grow + 1)
        img[r0:r1, max(0, c - t // 2 - grow) : min(w, c + t - t // 2 + grow)] = color
        img[max(0, r - t // 2 - grow) : min(h, r + t - t // 2 + grow), c0:c1] = color
