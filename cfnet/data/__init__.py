"""Data: COCO-panoptic-format splits (COCO, ADE20k-panoptic, the synthetic ``shapes`` set),
their training transforms and training order (sampler), and the ``shapes`` generator."""

from cfnet.data.panoptic import (
    LAYOUTS,
    PanopticDataset,
    SplitLayout,
    SplitPaths,
    collate,
    find_splits,
    load_panoptic_json,
    read_image,
    resolve_split,
    resolve_splits,
)
from cfnet.data.sampler import InfiniteShardSampler, SeededSamples
from cfnet.data.shapes import generate_shapes, save_sample_grid, shapes_statistics
from cfnet.data.transforms import (
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    ResizeShortestEdge,
    build_transforms,
)

__all__ = [
    "LAYOUTS",
    "SplitLayout",
    "Compose",
    "InfiniteShardSampler",
    "PanopticDataset",
    "RandomCrop",
    "RandomHorizontalFlip",
    "ResizeShortestEdge",
    "SeededSamples",
    "SplitPaths",
    "build_transforms",
    "collate",
    "generate_shapes",
    "load_panoptic_json",
    "read_image",
    "find_splits",
    "resolve_split",
    "resolve_splits",
    "save_sample_grid",
    "shapes_statistics",
]
