"""Auxiliary losses that push the M outputs apart (diversity) and towards few active outputs (sparsity).

Both are differentiable and unsupervised; the trainer adds them to the MixIT loss with small weights.
"""

import torch

_EPS = 1e-8


def diversity_loss(masks: torch.Tensor, mixture_spec_mag: torch.Tensor) -> torch.Tensor:
    """Mean pairwise cosine similarity of the masked magnitude spectrograms, averaged over the batch.

    masks: (B, M, C, F, L) with M >= 2 (as ``PerformerSeparator(..., return_masks=True)`` returns them);
    mixture_spec_mag: (B, C, F, L) magnitude of the mixture STFT. Returns a scalar in [0, 1] (magnitudes and
    masks are non-negative): 1 when all outputs are proportional, 0 when their TF supports are disjoint.
    Computed in float32. An all-zero output counts as dissimilar to everything (its cosine is 0).
    """
    if not isinstance(masks, torch.Tensor) or not isinstance(mixture_spec_mag, torch.Tensor):
        raise TypeError("diversity_loss expects tensors: masks (B, M, C, F, L), mixture_spec_mag (B, C, F, L)")
    if masks.dim() != 5 or masks.shape[1] < 2:
        raise ValueError(f"masks must have shape (B, M >= 2, C, F, L), got {tuple(masks.shape)}")
    if mixture_spec_mag.shape != masks.shape[:1] + masks.shape[2:]:
        raise ValueError(f"mixture_spec_mag must have shape (B, C, F, L) = {tuple(masks.shape[:1] + masks.shape[2:])}"
                         f" to match masks {tuple(masks.shape)}, got {tuple(mixture_spec_mag.shape)}")
    if mixture_spec_mag.is_complex():
        raise TypeError("mixture_spec_mag must be the real magnitude (spec.abs()), got a complex tensor")
    b, m = masks.shape[:2]
    masked = (masks.float() * mixture_spec_mag.float().unsqueeze(1)).reshape(b, m, -1)
    unit = masked / masked.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    cos = unit @ unit.transpose(1, 2)  # (B, M, M)
    off_diagonal = cos.sum(dim=(1, 2)) - cos.diagonal(dim1=1, dim2=2).sum(dim=1)
    return (off_diagonal / (m * (m - 1))).mean()


def sparsity_loss(estimates: torch.Tensor) -> torch.Tensor:
    """‖r‖₁ / ‖r‖₂ of the per-output RMS vector r, averaged over the batch.

    estimates: (B, M, C, T) or (B, M, T) waveforms. r_m = RMS of output m over channels and samples. Returns a
    scalar in [1, √M]: 1 when one output carries everything, √M when all M are equally loud (an all-silent
    example counts as equally loud). A 1e-8 floor on r keeps the gradient finite at silence. Computed in float32.
    """
    if not isinstance(estimates, torch.Tensor):
        raise TypeError(f"estimates must be a tensor (B, M, C, T) or (B, M, T), got {type(estimates).__name__}")
    if estimates.dim() not in (3, 4):
        raise ValueError(f"estimates must have shape (B, M, C, T) or (B, M, T), got {tuple(estimates.shape)}")
    r = estimates.float().flatten(2).pow(2).mean(dim=-1).add(_EPS * _EPS).sqrt()  # (B, M)
    return (r.sum(dim=1) / r.norm(dim=1)).mean()
