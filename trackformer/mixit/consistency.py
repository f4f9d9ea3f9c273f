"""Mixture consistency projection (Wisdom et al., 2019): make the estimates sum to the mixture."""

import torch

from trackformer.mixit.stats import accumulation_dtype

WEIGHTINGS = ("uniform", "power")


def mixture_consistency(estimates: torch.Tensor, mixture: torch.Tensor, weighting: str = "uniform",
                        eps: float = 1e-8) -> torch.Tensor:
    """Distributes the residual x − Σ_m ŝ_m over the estimates so that they sum to the mixture.

    Args:
        estimates: (B, M, T) or (B, M, C, T); mixture: (B, T) or (B, C, T) matching it.
        weighting: "uniform" (w_m = 1/M) or "power" (w_m = ‖ŝ_m‖² / Σ_m' ‖ŝ_m'‖², norms over time per channel;
            uniform where all estimates are silent).
    Returns:
        ŝ_m + w_m·(x − Σ_m' ŝ_m'), same shape and dtype as estimates, differentiable.
    """
    if not isinstance(estimates, torch.Tensor) or not isinstance(mixture, torch.Tensor):
        raise TypeError("mixture_consistency: estimates and mixture must be torch.Tensors")
    if not estimates.is_floating_point() or not mixture.is_floating_point():
        raise TypeError(f"mixture_consistency: needs floating dtypes, got {estimates.dtype} and {mixture.dtype}")
    if estimates.device != mixture.device:
        raise ValueError(f"mixture_consistency: estimates on {estimates.device}, mixture on {mixture.device}")
    if estimates.dim() not in (3, 4) or mixture.shape != estimates.shape[:1] + estimates.shape[2:]:
        raise ValueError(f"mixture_consistency: estimates must be (B, M, [C,] T) and mixture (B, [C,] T), got "
                         f"{tuple(estimates.shape)} and {tuple(mixture.shape)}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"mixture_consistency: weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    residual = (mixture - estimates.sum(1)).unsqueeze(1)
    m = estimates.shape[1]
    if weighting == "uniform":
        return estimates + residual / m
    power = estimates.to(accumulation_dtype(estimates)).pow(2).sum(-1, keepdim=True)
    total = power.sum(1, keepdim=True)
    weights = torch.where(total > eps, power / total.clamp_min(eps), torch.full_like(power, 1.0 / m))
    return estimates + (weights * residual).to(estimates.dtype)
