"""Orthogonal random features for FAVOR+ (DESIGN.md §3)."""

import math

import torch


def orthogonal_random_features(m: int, d: int, *, generator: torch.Generator | None = None,
                               scaling: int = 0) -> torch.Tensor:
    """Projection W (m, d) float32 on the CPU: stacked d × d orthogonal blocks, the last one cut to m mod d rows.

    Each block is a Haar-distributed orthogonal matrix (QR of a standard Gaussian d × d matrix with the signs
    of R's diagonal moved into Q): rows orthonormal within a block, uniform in direction, blocks independent.
    Row norms are then set to chi(d) draws (norms of Gaussian d-vectors, ``scaling=0``, so each row is
    marginally N(0, I_d) and the FAVOR+ estimate is unbiased) or to √d (``scaling=1``). Same construction as
    performer-pytorch's ``gaussian_orthogonal_random_matrix`` plus the sign fix. Move it with ``.to(device)``.
    """
    if isinstance(m, bool) or not isinstance(m, int) or isinstance(d, bool) or not isinstance(d, int):
        raise TypeError(f"m and d must be ints, got {type(m).__name__} and {type(d).__name__}")
    if m < 1 or d < 1:
        raise ValueError(f"m (number of features) and d (head dimension) must be >= 1, got m={m}, d={d}")
    if scaling not in (0, 1):
        raise ValueError(f"scaling must be 0 (chi(d) row norms) or 1 (row norms sqrt(d)), got {scaling!r}")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator, got one on {generator.device}")
    blocks = []
    for _ in range(math.ceil(m / d)):
        gauss = torch.randn(d, d, generator=generator, dtype=torch.float32)
        q, r = torch.linalg.qr(gauss, mode="reduced")
        # Sign fix: Q·diag(sign(diag R)) is Haar-distributed. Raw LAPACK Q is not (its first column always has a
        # negative first entry), which biases the feature estimator (performer-pytorch omits this fix).
        q = q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0)
        blocks.append(q.t())
    w = torch.cat(blocks)[:m]
    if scaling == 0:
        norms = torch.randn(m, d, generator=generator, dtype=torch.float32).norm(dim=1)
    else:
        norms = torch.full((m,), math.sqrt(d), dtype=torch.float32)
    return norms.unsqueeze(1) * w
