"""trackformer.kernels: fused Triton kernels (this folder is installed as ``trackformer.kernels``).

FAVOR+ attention (kernels/favor): ``favor_attention``, ``favor_features``, ``orthogonal_random_features``.
"""

from .favor import favor_attention, favor_features, orthogonal_random_features

__all__ = ["favor_attention", "favor_features", "orthogonal_random_features"]
