"""FAVOR+ attention: reference formula, chunked PyTorch path, fused Triton kernels, the public op and its limits."""

from .limits import HEAD_DIMS, MAX_FEATURES, MAX_TRITON_LENGTH, check_features, check_head_dim
from .op import favor_attention, favor_features
from .random_features import orthogonal_random_features

__all__ = ["HEAD_DIMS", "MAX_FEATURES", "MAX_TRITON_LENGTH", "check_features", "check_head_dim", "favor_attention",
           "favor_features", "orthogonal_random_features"]
