"""trackformer.kernels: fused Triton kernels (this folder is installed as ``trackformer.kernels``).

FAVOR+ attention (kernels/favor): ``favor_attention``, ``favor_features``, ``orthogonal_random_features``, and its
limits (``HEAD_DIMS``, ``MAX_FEATURES``, ``MAX_TRITON_LENGTH``, validated by ``check_head_dim`` and
``check_features``; kernels/favor/limits.py).
"""

from .favor import (
    HEAD_DIMS,
    MAX_FEATURES,
    MAX_TRITON_LENGTH,
    check_features,
    check_head_dim,
    favor_attention,
    favor_features,
    orthogonal_random_features,
)

__all__ = ["HEAD_DIMS", "MAX_FEATURES", "MAX_TRITON_LENGTH", "check_features", "check_head_dim", "favor_attention",
           "favor_features", "orthogonal_random_features"]
