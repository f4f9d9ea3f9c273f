"""MixIT losses: exact assignment search on the statistics, then one remix with autograd.

``best_assignment`` forms G, c, e (stats.py) and runs the exhaustive search (search.py) without gradients;
``mixit_loss`` remixes the estimates by that assignment once and evaluates the loss on the remixed waveforms,
so the gradient flows through the chosen assignment only.
"""

import math

import torch

from trackformer.mixit.search import SEARCH_EPS, search
from trackformer.mixit.stats import accumulation_dtype, flatten_inputs, statistics

LOSS_TYPES = ("thresholded_snr", "neg_snr", "neg_sisnr")
REDUCTIONS = ("mean", "sum", "none")


def snr_tau(snr_max) -> float:
    """τ = 10^(−snr_max/10); snr_max None or +inf gives τ = 0 (no threshold)."""
    if snr_max is None:
        return 0.0
    if isinstance(snr_max, bool) or not isinstance(snr_max, (int, float)) or math.isnan(snr_max):
        raise TypeError(f"mixit: snr_max must be a real number (dB) or None, got {snr_max!r}")
    return 10.0 ** (-float(snr_max) / 10.0)


def per_mixture_loss(remixed: torch.Tensor, mixtures: torch.Tensor, tau: float, loss_type: str) -> torch.Tensor:
    """Loss of each remixed signal against its mixture, in dB.

    Args: remixed, mixtures (..., L) in the accumulation dtype; tau from :func:`snr_tau`; loss_type one of
        LOSS_TYPES: "thresholded_snr" 10·log10(‖x − r‖² + τ‖x‖² + 1e-8); "neg_snr" the same minus
        10·log10(‖x‖² + 1e-8) (the negative SNR, capped at snr_max); "neg_sisnr" −SI-SNR(r, x) (zero-mean, eps 1e-8).
    Returns: (...) losses.
    """
    if loss_type == "neg_sisnr":
        r = remixed - remixed.mean(-1, keepdim=True)
        x = mixtures - mixtures.mean(-1, keepdim=True)
        alpha = (r * x).sum(-1, keepdim=True) / (x.pow(2).sum(-1, keepdim=True) + SEARCH_EPS)
        target = alpha * x
        return -10 * torch.log10((target.pow(2).sum(-1) + SEARCH_EPS) / ((target - r).pow(2).sum(-1) + SEARCH_EPS))
    energy = mixtures.pow(2).sum(-1)
    loss = 10 * torch.log10((mixtures - remixed).pow(2).sum(-1) + tau * energy + SEARCH_EPS)
    if loss_type == "neg_snr":
        loss = loss - 10 * torch.log10(energy + SEARCH_EPS)
    return loss


def _check_finite(*stats: torch.Tensor) -> None:
    if torch.compiler.is_compiling():
        return  # no data-dependent branch in a graph; the search then returns a NaN loss
    if not all(bool(torch.isfinite(s).all()) for s in stats):
        raise ValueError("mixit: estimates or mixtures contain NaN or inf (or their energies overflow "
                         "the accumulation dtype)")


def best_assignment(estimates: torch.Tensor, mixtures: torch.Tensor, *, snr_max=30.0):
    """The MixIT-optimal assignment of estimates to mixtures (no gradient).

    Args:
        estimates: (B, M, T) or (B, M, C, T), M ≤ 16; mixtures: (B, N, T) or (B, N, C, T), 2 ≤ N ≤ M.
        snr_max: SNR threshold in dB (τ = 10^(−snr_max/10)); None for none.
    Returns:
        assignment (B, M) int64 in [0, N) (estimate m goes to mixture assignment[b, m]) and the thresholded-SNR
        loss (B,) in dB of that assignment, float32 (float64 for float64 inputs). Ties go to the lowest
        index Σ_m A_m·N^m.
    """
    tau = snr_tau(snr_max)
    est, mix = flatten_inputs(estimates, mixtures)
    with torch.no_grad():
        stats = statistics(est, mix)
        _check_finite(*stats)
        return search(*stats, tau)


def remix(estimates: torch.Tensor, assignment: torch.Tensor, n: int) -> torch.Tensor:
    """Sums the estimates (B, M, ...) into N groups by assignment (B, M) → (B, N, ...), differentiable."""
    b, m = assignment.shape
    onehot = torch.nn.functional.one_hot(assignment, n).transpose(1, 2).to(estimates.dtype)    # (B, N, M)
    return torch.bmm(onehot, estimates.reshape(b, m, -1)).reshape(b, n, *estimates.shape[2:])


def mixit_loss(estimates: torch.Tensor, mixtures: torch.Tensor, *, snr_max=30.0, reduction: str = "mean",
               return_assignment: bool = False, loss_type: str = "thresholded_snr"):
    """MixIT loss (dB, lower is better) with the exact best assignment.

    Args:
        estimates: (B, M, T) or (B, M, C, T) separated sources, M ≤ 16, any floating dtype (fp16/bf16 are
            remixed and scored in float32).
        mixtures: (B, N, T) or (B, N, C, T) the mixtures that were summed, 2 ≤ N ≤ M.
        snr_max: threshold in dB, τ = 10^(−snr_max/10) (None: none).
        reduction: "mean" over the batch, "sum", or "none" for (B,) losses.
        return_assignment: also return the assignment (B, M) int64 and the remixed estimates (B, N, [C,] T).
        loss_type: "thresholded_snr" (the MixIT paper's), "neg_snr" or "neg_sisnr" (see :func:`per_mixture_loss`);
            the assignment always minimises the thresholded-SNR loss, which differs from "neg_snr" by a constant.
    Returns:
        loss, or (loss, assignment, remixed) with ``return_assignment``.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"mixit: loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"mixit: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    assignment, _ = best_assignment(estimates, mixtures, snr_max=snr_max)
    tau = snr_tau(snr_max)
    acc = accumulation_dtype(estimates, mixtures)
    b, n = mixtures.shape[:2]
    remixed = remix(estimates.to(acc), assignment, n)
    loss = per_mixture_loss(remixed.reshape(b, n, -1), mixtures.to(acc).reshape(b, n, -1), tau, loss_type).mean(-1)
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return (loss, assignment, remixed) if return_assignment else loss
