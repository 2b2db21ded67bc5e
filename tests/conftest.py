"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for modules of tiny tensors.

    Tiny inputs gain nothing from threads, and when the 2 cores are busy OpenMP oversubscription
    makes them several times slower. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def coco():
    """COCO's 133 panoptic categories as shipped with the package."""
    from cfnet.categories import Categories

    return Categories.from_spec("coco")
