"""Training data order: a deterministic infinite stream, sharded over ranks, with seeded samples.

**Data order** is a pure function of ``(seed, iteration)``: an infinite stream that concatenates one
seeded permutation of the training set per epoch; global batch ``i`` is stream positions
``[i·B, (i+1)·B)`` with ``B = solver.batch_size`` (the *total* batch) and rank ``r`` of ``W`` takes
the contiguous slice ``[i·B + r·B/W, i·B + (r+1)·B/W)``. So the union of the ranks' batches is the
single-process batch, and resuming at iteration ``i`` continues the stream exactly (the sampler's
position is the iteration). Every sample's augmentation RNGs (torch, numpy, python ``random``)
are seeded from ``(seed, epoch, index)`` around the dataset call, so augmentation is reproducible
whatever the number of loader workers and across resumes.

    sampler = InfiniteShardSampler(len(dataset), seed=cfg.seed, total_batch=B, rank=r, world_size=W)
    loader = DataLoader(SeededSamples(dataset, cfg.seed), batch_size=sampler.per_rank, sampler=sampler)
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["InfiniteShardSampler", "SeededSamples"]


class InfiniteShardSampler(Sampler):
    """Infinite deterministic stream of ``(epoch, index)`` keys for one rank (see module docstring).

    Position ``g`` of the global stream is ``(g // n, perm_{g // n}[g % n])`` with ``perm_e`` a
    permutation of ``range(n)`` seeded by ``(seed, e)``. Iteration ``i`` of rank ``r`` yields the
    positions ``i·B + r·b .. i·B + (r+1)·b − 1`` with ``b = B / world_size``.
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        total_batch: int,
        rank: int = 0,
        world_size: int = 1,
        start_iter: int = 0,
        shuffle: bool = True,
    ):
        if size <= 0:
            raise ValueError("InfiniteShardSampler: the dataset is empty")
        if total_batch % world_size:
            raise ValueError(f"total batch {total_batch} is not divisible by the world size {world_size}")
        self.size, self.seed, self.total_batch = size, seed, total_batch
        self.rank, self.world_size, self.start_iter, self.shuffle = rank, world_size, start_iter, shuffle
        self.per_rank = total_batch // world_size
        self._perm_epoch = -1
        self._perm: list[int] = []

    def key(self, position: int) -> tuple[int, int]:
        epoch, k = divmod(position, self.size)
        if epoch != self._perm_epoch:
            if self.shuffle:
                g = torch.Generator().manual_seed(_mix(self.seed, epoch))
                self._perm = torch.randperm(self.size, generator=g).tolist()
            else:
                self._perm = list(range(self.size))
            self._perm_epoch = epoch
        return epoch, self._perm[k]

    def batch_keys(self, iteration: int) -> list[tuple[int, int]]:
        base = iteration * self.total_batch + self.rank * self.per_rank
        return [self.key(base + j) for j in range(self.per_rank)]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        it = self.start_iter
        while True:
            yield from self.batch_keys(it)
            it += 1


def _mix(*values: int) -> int:
    """A 63-bit seed from several integers (numpy's SeedSequence hashing)."""
    words = np.random.SeedSequence([int(v) % (1 << 63) for v in values]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) | (int(words[1]) << 32)) & ((1 << 63) - 1)


class SeededSamples(Dataset):
    """Wraps a dataset so that item ``(epoch, index)`` is drawn with its own seeded RNGs.

    The global torch / numpy / python RNGs are seeded from ``(seed, epoch, index)`` for the duration
    of the dataset call and restored afterwards, so random augmentation does not depend on loader
    workers or on what ran before (a resumed run draws the same crops and flips).
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        s = _mix(self.seed, 7919, epoch, index)
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                random.seed(s)
                np.random.seed(s % (1 << 32))
                return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
