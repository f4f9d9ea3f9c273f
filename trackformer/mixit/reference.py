"""Brute-force MixIT, the tests' oracle: remix the estimates by every one of the N^M assignments, keep the best.

Written from shared/DESIGN.md's definition alone, in plain PyTorch: it shares no code with the loss, statistics or
search it checks (trackformer.mixit.loss/stats/search), so a bug there cannot hide here.
"""

import torch

EPS = 1e-8  # shared/DESIGN.md's 1e-8 inside the logarithms
LOSS_TYPES = ("thresholded_snr", "neg_snr", "neg_sisnr")


def _labels(index: torch.Tensor, m: int, n: int) -> torch.Tensor:
    """Assignment indices (K,) → labels (K, M): estimate j goes to digit j of the index in base N."""
    digits = []
    for _ in range(m):
        digits.append(index % n)
        index = index // n
    return torch.stack(digits, -1)


def _per_mixture(remixed: torch.Tensor, mix: torch.Tensor, tau: float, loss_type: str) -> torch.Tensor:
    """Loss (..., N) in dB of remixed signals (..., N, L) against the mixtures (..., N, L)."""
    if loss_type == "neg_sisnr":  # −SI-SNR(remix, mixture), zero-mean, α = ⟨r, x⟩ / ‖x‖²
        r = remixed - remixed.mean(-1, keepdim=True)
        x = mix - mix.mean(-1, keepdim=True)
        target = (r * x).sum(-1, keepdim=True) / (x.square().sum(-1, keepdim=True) + EPS) * x
        return -10 * torch.log10(target.square().sum(-1) / ((target - r).square().sum(-1) + EPS) + EPS)
    energy = mix.square().sum(-1)
    loss = 10 * torch.log10((mix - remixed).square().sum(-1) + tau * energy + EPS)
    if loss_type == "neg_snr":
        loss = loss - 10 * torch.log10(energy + EPS)
    return loss


def mixit_bruteforce(estimates: torch.Tensor, mixtures: torch.Tensor, *, snr_max=30.0,
                     loss_type: str = "thresholded_snr", chunk_elements: int = 1 << 24):
    """Exhaustive MixIT by remixing waveforms; differentiable (gradient flows through the chosen remix).

    Args: estimates (B, M, T) or (B, M, C, T), mixtures (B, N, T) or (B, N, C, T) (not validated: an oracle for
        valid inputs); snr_max in dB (None: no threshold); loss_type one of LOSS_TYPES; chunk_elements bounds the
        remixed elements held at once.
    Returns: per-example loss (B,) in dB (of ``loss_type``, at the assignment minimising the thresholded-SNR loss,
        lowest index Σ_m A_m·N^m on ties) and that assignment (B, M) int64.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"mixit_bruteforce: loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    tau = 0.0 if snr_max is None else 10.0 ** (-snr_max / 10.0)
    (b, m), n = estimates.shape[:2], mixtures.shape[1]
    acc = torch.float64 if torch.float64 in (estimates.dtype, mixtures.dtype) else torch.float32
    est, mix = estimates.reshape(b, m, -1).to(acc), mixtures.reshape(b, n, -1).to(acc)
    per_chunk = max(1, chunk_elements // (b * n * est.shape[-1]))
    objectives = []
    with torch.no_grad():
        for start in range(0, n**m, per_chunk):
            index = torch.arange(start, min(start + per_chunk, n**m), device=est.device)
            onehot = torch.nn.functional.one_hot(_labels(index, m, n), n).to(acc)             # (K, M, N)
            remixed = torch.einsum("kmn,bml->bknl", onehot, est)
            objectives.append(_per_mixture(remixed, mix[:, None], tau, "thresholded_snr").mean(-1))
    best = torch.cat(objectives, 1).argmin(1)                                                  # first minimum
    assignment = _labels(best, m, n)
    remixed = torch.einsum("bmn,bml->bnl", torch.nn.functional.one_hot(assignment, n).to(acc), est)
    return _per_mixture(remixed, mix, tau, loss_type).mean(-1), assignment
