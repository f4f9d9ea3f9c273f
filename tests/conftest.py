"""Shared test setup: poisoned kernel outputs, seeded RNGs, the gpu marker."""

import os
import random

os.environ["TRACKFORMER_POISON_OUTPUTS"] = "1"  # before any trackformer import: see trackformer/_alloc.py

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
