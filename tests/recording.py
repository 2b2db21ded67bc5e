"""A dispatch mode that records the size of every tensor ops produce, to test memory bounds."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class RecordShapes(TorchDispatchMode):
    """Records the element count of every tensor any op produces (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.sizes: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.sizes.append((str(func), t.numel()))
        return out
