"""Brute-force MixIT: remix the estimates by every one of the N^M assignments and keep the best (the oracle)."""

import torch

from trackformer.mixit.loss import per_mixture_loss, snr_tau
from trackformer.mixit.search import assignment_digits
from trackformer.mixit.stats import accumulation_dtype, flatten_inputs


def mixit_bruteforce(estimates: torch.Tensor, mixtures: torch.Tensor, *, snr_max=30.0,
                     loss_type: str = "thresholded_snr", chunk_elements: int = 1 << 24):
    """Exhaustive MixIT by remixing waveforms; differentiable (gradient flows through the chosen remix).

    Args: as :func:`trackformer.mixit.mixit_loss`; chunk_elements bounds the remixed elements held at once.
    Returns: per-example loss (B,) in dB (of ``loss_type``, at the assignment minimising the thresholded-SNR
        loss, lowest index Σ_m A_m·N^m on ties) and that assignment (B, M) int64.
    """
    tau = snr_tau(snr_max)
    est, mix = flatten_inputs(estimates, mixtures)
    acc = accumulation_dtype(est, mix)
    est, mix = est.to(acc), mix.to(acc)
    (b, m, length), n = est.shape, mix.shape[1]
    per_chunk = max(1, chunk_elements // (b * n * length))
    objectives = []
    for start in range(0, n**m, per_chunk):
        k = torch.arange(start, min(start + per_chunk, n**m), device=est.device)
        onehot = torch.nn.functional.one_hot(assignment_digits(k, m, n), n).to(acc)       # (K, M, N)
        remixed = torch.einsum("kmn,bml->bknl", onehot, est)
        with torch.no_grad():
            objectives.append(per_mixture_loss(remixed, mix[:, None], tau, "thresholded_snr").mean(-1))
    best = torch.cat(objectives, 1).argmin(1)                                                   # first minimum
    assignment = assignment_digits(best, m, n)
    onehot = torch.nn.functional.one_hot(assignment, n).transpose(1, 2).to(acc)                # (B, N, M)
    remixed = torch.bmm(onehot, est)
    return per_mixture_loss(remixed, mix, tau, loss_type).mean(-1), assignment
