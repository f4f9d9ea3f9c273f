"""FAVOR+ attention: reference formula, chunked PyTorch path, fused Triton kernels and the public op."""

from .op import favor_attention, favor_features
from .random_features import orthogonal_random_features

__all__ = ["favor_attention", "favor_features", "orthogonal_random_features"]
