"""Exhaustive MixIT assignment search from the inner-product statistics.

An assignment maps each estimate m to a mixture A_m ∈ [0, N); its index is k = Σ_m A_m·N^m (estimate 0 is the
least significant base-N digit). The search returns the k minimising
``(1/N) Σ_n 10·log10(max(e_n − 2 Σ_{m: A_m = n} c_mn + Σ_{m, m': A_m = A_m' = n} G_mm', 0) + τ·e_n + 1e-8)``
and, among exact ties, the lowest k. The compiled op (csrc/mixit/) evaluates the squared errors in exact
integer arithmetic on statistics rounded to a per-example fixed-point grid (2^-52 of the largest statistic) and
compares the objectives without transcendental functions, so its CPU and CUDA kernels given the same statistics
(bit for bit) return the same assignment; the losses they report may differ in the last bits (each device's
log10).
"""

import torch

from trackformer import _ext

SEARCH_EPS = 1e-8


def assignment_digits(index: torch.Tensor, m: int, n: int) -> torch.Tensor:
    """Assignment indices (...) → per-estimate mixture labels (..., M) int64: digit j of index in base N."""
    powers = torch.tensor([n**j for j in range(m)], dtype=torch.int64, device=index.device)
    return torch.div(index.unsqueeze(-1), powers, rounding_mode="floor") % n


def search_reference(gram: torch.Tensor, cross: torch.Tensor, energy: torch.Tensor, tau: float,
                     *, chunk: int = 1 << 13) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain PyTorch exhaustive search (float64), the oracle for ``torch.ops.trackformer.mixit_search``.

    Args: gram (B, M, M), cross (B, M, N), energy (B, N) statistics; tau = 10^(−snr_max/10).
    Returns: assignment (B, M) int64 in [0, N) and loss (B,) in dB, in the statistics' dtype.
    """
    b, m, n = cross.shape
    g, c, e = gram.double(), cross.double(), energy.double()
    best = torch.full((b,), float("inf"), dtype=torch.float64, device=g.device)
    best_k = torch.zeros(b, dtype=torch.int64, device=g.device)
    for start in range(0, n**m, chunk):
        k = torch.arange(start, min(start + chunk, n**m), device=g.device)
        onehot = torch.nn.functional.one_hot(assignment_digits(k, m, n), n).double()   # (K, M, N)
        lin = torch.einsum("kmn,bmn->bkn", onehot, c)
        quad = (torch.einsum("kmn,bmp->bknp", onehot, g) * onehot.permute(0, 2, 1)).sum(-1)
        err = (e[:, None, :] - 2 * lin + quad).clamp_min(0)
        obj = (10 * torch.log10(err + tau * e[:, None, :] + SEARCH_EPS)).mean(-1)          # (B, K)
        val, arg = obj.min(-1)
        better = val < best
        best = torch.where(better, val, best)
        best_k = torch.where(better, k[arg], best_k)
    return assignment_digits(best_k, m, n), best.to(gram.dtype)


def search(gram: torch.Tensor, cross: torch.Tensor, energy: torch.Tensor, tau: float):
    """Best assignment (B, M) int64 and its loss (B,) from the statistics; see the module docstring.

    Runs ``torch.ops.trackformer.mixit_search`` (C++ with the examples in parallel, or CUDA: one block per
    example), loading the compiled extension on first use. Raises ValueError for non-finite statistics on the CPU;
    on CUDA such an example gets a NaN loss.
    """
    _ext.load()
    _ext.check_device("mixit_search", gram.device)
    return torch.ops.trackformer.mixit_search(gram.contiguous(), cross.contiguous(), energy.contiguous(), float(tau))


@_ext.register_fake("trackformer::mixit_search")
def _search_fake(gram, cross, energy, tau):
    b, m, _ = cross.shape
    return gram.new_empty((b, m), dtype=torch.int64), gram.new_empty((b,))
