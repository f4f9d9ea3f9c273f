"""pytest setup for the CPU benchmark regression checks (make bench-check): seeded RNGs, the gpu marker.

Outputs are not NaN-poisoned here (tests/conftest.py does that for correctness tests): filling buffers would
add to the times being compared.
"""

import random

import numpy as np
import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and "benchmarks" in str(item.path):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
