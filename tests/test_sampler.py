"""cfnet.data.sampler: the training data order and the per-sample seeding of augmentation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from cfnet.data import InfiniteShardSampler, SeededSamples


def test_sampler_shards_union_is_the_single_process_batch():
    one = InfiniteShardSampler(7, seed=5, total_batch=4)
    two = [InfiniteShardSampler(7, seed=5, total_batch=4, rank=r, world_size=2) for r in range(2)]
    for it in range(6):  # crosses several epoch boundaries (7 is not a multiple of 4)
        assert two[0].batch_keys(it) + two[1].batch_keys(it) == one.batch_keys(it)
        assert len(two[0].batch_keys(it)) == 2
    # Each epoch is a permutation; epochs differ; a sampler started at iteration 3 continues the stream.
    stream = [k for it in range(7) for k in one.batch_keys(it)]  # 28 = 4 epochs of 7
    for e in range(4):
        assert sorted(i for ep, i in stream[7 * e : 7 * e + 7]) == list(range(7))
        assert {ep for ep, _ in stream[7 * e : 7 * e + 7]} == {e}
    assert [i for _, i in stream[:7]] != [i for _, i in stream[7:14]]
    resumed = iter(InfiniteShardSampler(7, seed=5, total_batch=4, start_iter=3))
    assert [next(resumed) for _ in range(8)] == stream[12:20]
    with pytest.raises(ValueError, match="not divisible"):
        InfiniteShardSampler(7, seed=0, total_batch=3, world_size=2)


class _Draws(torch.utils.data.Dataset):
    """Item ``i``: ``i`` and one draw of each global RNG, as a random augmentation makes them."""

    def __len__(self) -> int:
        return 5

    def __getitem__(self, index: int):
        return index, float(torch.rand(())), float(np.random.rand()), random.random()


def test_seeded_samples_draw_the_same_augmentation_whatever_ran_before():
    samples = SeededSamples(_Draws(), seed=11)
    first = samples[(2, 3)]
    assert first[0] == 3  # the wrapped dataset gets the index, the epoch only seeds
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    torch.rand(7), np.random.rand(7), random.random()  # what ran before (other samples, a resume)
    assert samples[(2, 3)] == first
    assert SeededSamples(_Draws(), seed=11)[(2, 3)] == first  # a fresh wrapper (another loader worker)
    # Another epoch of the same image, another image, another seed: other draws.
    others = [samples[(3, 3)], samples[(2, 4)], SeededSamples(_Draws(), seed=12)[(2, 3)]]
    assert all(o[1:] != first[1:] for o in others)
    assert len({o[1] for o in others} | {first[1]}) == 4


def test_seeded_samples_leave_the_global_rngs_as_they_were():
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    expected = (float(torch.rand(())), float(np.random.rand()), random.random())
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    SeededSamples(_Draws(), seed=0)[(0, 1)]
    assert (float(torch.rand(())), float(np.random.rand()), random.random()) == expected
    assert len(SeededSamples(_Draws(), seed=0)) == 5


def test_sampler_refuses_an_empty_dataset_and_can_keep_the_order():
    with pytest.raises(ValueError, match="empty"):
        InfiniteShardSampler(0, seed=0, total_batch=2)
    plain = InfiniteShardSampler(3, seed=0, total_batch=2, shuffle=False)
    assert [k for it in range(3) for k in plain.batch_keys(it)] == [
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)
    ]  # fmt: skip
