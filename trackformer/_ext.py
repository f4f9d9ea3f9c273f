"""Loading of the compiled extension ``trackformer._C`` with an error that says how to build it."""

import functools

import torch


@functools.cache
def ops():
    """The ``torch.ops.trackformer`` namespace, after loading the compiled extension once."""
    try:
        from trackformer import _C  # noqa: F401  (registers the ops)
    except ImportError as err:
        raise RuntimeError(
            "trackformer's compiled extension (trackformer._C, built from csrc/) is missing or failed to load: "
            f"{err}. Build it with `make build` (or `pip install --no-build-isolation -e .`) in an environment "
            "with torch, a C++17 compiler and ninja."
        ) from err
    return torch.ops.trackformer

