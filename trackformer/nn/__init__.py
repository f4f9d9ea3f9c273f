"""trackformer.nn: neural-network modules built on trackformer's kernels."""

from .attention import FavorAttention
from .block import PreNormBlock

__all__ = ["FavorAttention", "PreNormBlock"]
