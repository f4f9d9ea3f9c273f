"""NVTX ranges for Nsight Systems timelines, free when there is nothing to annotate.

``with nvtx_range("encoder/layer3"): ...`` pushes an NVTX range on a CUDA build of torch with a GPU present and
pops it on exit (also on an exception). On a CPU-only machine, and while ``torch.compile`` traces (where a range
would break the graph and would not map onto fused kernels anyway), it returns one shared no-op context manager,
so annotated code costs one function call and a cached flag check.
"""

import contextlib
import functools

import torch

_NULL = contextlib.nullcontext()


@functools.cache
def _nvtx_available() -> bool:
    return torch.version.cuda is not None and torch.cuda.is_available()


@contextlib.contextmanager
def _pushed(name: str):
    torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        torch.cuda.nvtx.range_pop()


def nvtx_range(name: str):
    """Context manager: an NVTX range called ``name`` on CUDA machines, a no-op elsewhere and under compile."""
    if torch.compiler.is_compiling() or not _nvtx_available():
        return _NULL
    return _pushed(name)
