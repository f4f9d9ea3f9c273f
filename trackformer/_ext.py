"""The compiled extension ``trackformer._C``, loaded on the first call of an op that needs it, never at import.

``import trackformer`` (and ``trackformer.mixit``) works without ``_C``; the MixIT ops call :func:`load` when they
run, which raises the error that says how to build the extension, and :func:`check_device` says to rebuild with
CUDA when a CPU-only build is given CUDA tensors. Fake (meta) implementations are declared with
:func:`register_fake` and registered once the op schemas exist, that is right after ``_C`` is loaded.
"""

import torch

_loaded = False
_fakes: list = []  # (qualname, fn) registered with torch.library once _C has defined the schemas


def register_fake(qualname: str):
    """Decorator: ``torch.library.register_fake(qualname)`` once ``_C`` is loaded (now, if it already is)."""

    def decorate(fn):
        _fakes.append((qualname, fn))
        if _loaded:
            torch.library.register_fake(qualname)(fn)
        return fn

    return decorate


@torch.compiler.assume_constant_result  # under torch.compile: run once while tracing, not traced
def load() -> bool:
    """Loads ``trackformer._C`` once (registering ``torch.ops.trackformer.*`` and their fake kernels); True."""
    global _loaded
    if _loaded:
        return True
    try:
        from trackformer import _C  # noqa: F401  (registers the ops)
    except ImportError as err:
        raise RuntimeError(
            "trackformer's compiled extension (trackformer._C, built from csrc/) is missing or failed to load: "
            f"{err}. Build it with `make build` (or `pip install --no-build-isolation -e .`) in an environment "
            "with torch, a C++17 compiler and ninja."
        ) from err
    for qualname, fn in _fakes:
        torch.library.register_fake(qualname)(fn)
    _loaded = True
    return True


def ops():
    """The ``torch.ops.trackformer`` namespace, after :func:`load`."""
    load()
    return torch.ops.trackformer


def check_device(op: str, device: torch.device) -> None:
    """Raises RuntimeError when the loaded ``_C`` has no kernel of ``trackformer::op`` for ``device``'s type
    (a CPU-only build given CUDA tensors). Not checked while compiling (the dispatcher raises at run time)."""
    if device.type != "cuda" or torch.compiler.is_compiling():
        return
    if not torch._C._dispatch_has_kernel_for_dispatch_key(f"trackformer::{op}", "CUDA"):
        raise RuntimeError(
            f"trackformer::{op} got CUDA tensors, but trackformer._C was built without its CUDA kernels (a CPU-only "
            "build: torch without CUDA or no nvcc at build time). Rebuild it with `FORCE_CUDA=1 make build` (needs "
            "nvcc: export CUDA_HOME=/usr/local/cuda) in an environment whose torch is a CUDA build."
        )
