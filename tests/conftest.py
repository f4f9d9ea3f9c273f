"""Correctness-test setup: kernel outputs are NaN-poisoned (see trackformer/_alloc.py); the ``gpu_numerics``
fixture runs a test's Triton kernels with an sm_90 card's numerics (tests/gpu_numerics.py). Seeds and the gpu
marker come from the repository's root conftest.py."""

import os

import pytest

os.environ["TRACKFORMER_POISON_OUTPUTS"] = "1"  # before any trackformer import


@pytest.fixture
def gpu_numerics(monkeypatch):
    """The interpreter computes as an sm_90 card does (TF32 truncation, 3xTF32, half products, RNE bf16 casts,
    132-SM split counts) for this test; needs TRITON_INTERPRET=1."""
    from gpu_numerics import emulate_gpu_numerics

    from trackformer.kernels.favor import triton_fwd

    if not triton_fwd.interpreting():
        pytest.skip("the GPU-numerics emulation patches the Triton interpreter (TRITON_INTERPRET=1)")
    emulate_gpu_numerics(monkeypatch)
