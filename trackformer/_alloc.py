"""Output allocation for kernels: uninitialised in normal use, poisoned while testing.

With ``TRACKFORMER_POISON_OUTPUTS=1`` (tests/conftest.py sets it) every buffer a kernel is expected to write
in full is filled with NaN (floating) or the most negative integer first, so an element the kernel forgets to
write shows up as a failure instead of passing on leftover memory.
"""

import os

import torch


def poisoning() -> bool:
    return os.environ.get("TRACKFORMER_POISON_OUTPUTS", "0") == "1"


def new_output(shape, *, dtype: torch.dtype, device) -> torch.Tensor:
    """``torch.empty(shape)``; NaN / int-min filled when poisoning is on."""
    out = torch.empty(shape, dtype=dtype, device=device)
    if poisoning():
        out.fill_(float("nan") if out.is_floating_point() else torch.iinfo(dtype).min)
    return out
