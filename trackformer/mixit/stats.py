"""Input validation and the inner-product statistics MixIT searches over.

For estimates ŝ (B, M, L) and mixtures x (B, N, L), with L = C·T (channels and time flattened):
``G = ŝŝᵀ`` (B, M, M), ``c = ŝxᵀ`` (B, M, N), ``e = ‖x_n‖²`` (B, N), float64 whatever the input dtype (the
compiled op sums the products of one tile of positions in float32, or float64 for float64 inputs, and the tiles in
float64).
"""

import torch

from trackformer import _ext

MAX_ESTIMATES = 16


def accumulation_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (fp16/bf16 accumulate in float32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def flatten_inputs(estimates: torch.Tensor, mixtures: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validates MixIT inputs and flattens channels and time.

    Args:
        estimates: (B, M, T) or (B, M, C, T) separated sources, floating point.
        mixtures: (B, N, T) or (B, N, C, T) reference mixtures, same layout, device, B, C and T.
    Returns:
        (B, M, C·T) and (B, N, C·T) views (contiguous copies only where needed).
    Raises:
        TypeError for non-tensors or non-floating dtypes, ValueError for shapes, sizes or devices that do not fit.
    """
    for name, t in (("estimates", estimates), ("mixtures", mixtures)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"mixit: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"mixit: {name} must be floating point (float16/bfloat16/float32/float64), got {t.dtype}")
        if t.dim() not in (3, 4):
            raise ValueError(f"mixit: {name} must be (B, K, T) or (B, K, C, T), got shape {tuple(t.shape)}")
    if estimates.device != mixtures.device:
        raise ValueError(f"mixit: estimates are on {estimates.device} but mixtures on {mixtures.device}")
    if estimates.dim() != mixtures.dim():
        raise ValueError(f"mixit: estimates {tuple(estimates.shape)} and mixtures {tuple(mixtures.shape)} must both "
                         "be (B, K, T) or both (B, K, C, T)")
    (b, m), (bx, n) = estimates.shape[:2], mixtures.shape[:2]
    if b != bx:
        raise ValueError(f"mixit: batch sizes differ: estimates {b}, mixtures {bx}")
    if estimates.shape[2:] != mixtures.shape[2:]:
        what = "channels or length" if estimates.dim() == 4 else "length"
        raise ValueError(f"mixit: {what} differ: estimates {tuple(estimates.shape)}, mixtures {tuple(mixtures.shape)}")
    if n < 2:
        raise ValueError(f"mixit: needs N >= 2 mixtures, got N = {n}")
    if m > MAX_ESTIMATES:
        raise ValueError(f"mixit: at most M = {MAX_ESTIMATES} estimates are supported, got M = {m}")
    if n > m:
        raise ValueError(f"mixit: needs at least as many estimates as mixtures, got M = {m} < N = {n}")
    if b == 0 or estimates.shape[-1] == 0 or (estimates.dim() == 4 and estimates.shape[2] == 0):
        raise ValueError(f"mixit: empty inputs: estimates {tuple(estimates.shape)}")
    return estimates.reshape(b, m, -1), mixtures.reshape(b, n, -1)


def statistics_reference(est: torch.Tensor, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """G (B, M, M), c (B, M, N), e (B, N) with plain batched matmuls in float64 (the op's output dtype).

    Args: est (B, M, L), mix (B, N, L) as returned by :func:`flatten_inputs`.
    """
    s, x = est.double(), mix.double()
    gram = torch.bmm(s, s.transpose(1, 2))
    cross = torch.bmm(s, x.transpose(1, 2))
    energy = x.pow(2).sum(-1)
    return gram, cross, energy


def statistics(est: torch.Tensor, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """G, c, e (float64) as :func:`statistics_reference`, by ``torch.ops.trackformer.mixit_stats`` (one pass over
    the inputs; each pair's dot product independent of the rows' positions, so duplicated estimates give equal
    statistics), loading the compiled extension on first use. Not differentiable. Inputs of different dtypes are
    first cast to their promoted dtype.
    """
    _ext.load()
    _ext.check_device("mixit_stats", est.device)
    dtype = torch.promote_types(est.dtype, mix.dtype)
    est, mix = est.detach().to(dtype).contiguous(), mix.detach().to(dtype).contiguous()
    return torch.ops.trackformer.mixit_stats(est, mix)


@_ext.register_fake("trackformer::mixit_stats")
def _stats_fake(estimates, mixtures):
    (b, m, _), n = estimates.shape, mixtures.shape[1]
    f64 = torch.float64
    return (estimates.new_empty((b, m, m), dtype=f64), estimates.new_empty((b, m, n), dtype=f64),
            estimates.new_empty((b, n), dtype=f64))
