"""trackformer.nn: neural-network modules built on trackformer's kernels."""

from .attention import FavorAttention

__all__ = ["FavorAttention"]
