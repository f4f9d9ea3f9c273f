"""MixIT (mixture invariant training): exact best-assignment search in C++/CUDA and differentiable losses.

    mixit_loss(estimates, mixtures, *, snr_max=30.0, reduction="mean", return_assignment=False,
               loss_type="thresholded_snr")
    best_assignment(estimates, mixtures, *, snr_max=30.0) -> (assignment (B, M) int64, loss (B,))
    mixture_consistency(estimates, mixture, weighting="uniform" | "power")
"""

from trackformer.mixit.consistency import mixture_consistency
from trackformer.mixit.loss import LOSS_TYPES, best_assignment, mixit_loss, remix
from trackformer.mixit.reference import mixit_bruteforce

__all__ = ["LOSS_TYPES", "best_assignment", "mixit_bruteforce", "mixit_loss", "mixture_consistency", "remix"]
