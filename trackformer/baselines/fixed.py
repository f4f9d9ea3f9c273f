"""Non-learned separations that give a quality number its meaning: a fixed band split and the ideal ratio mask.

Both work on an STFT (Hann window, centred; the separator's n_fft and hop) and return waveforms that sum to the
mixture, like a separator's outputs.

- :func:`band_split`: ``n_bands`` outputs, each the mixture's STFT bins in one band of a log-spaced split of the
  spectrum (edges geometric from ``lowest_edge_hz`` to Nyquist; the first band starts at 0 Hz). A learned model
  that scores no better than this has learned a filterbank.
- :func:`ideal_ratio_mask`: the oracle |S_k| / Σ_j |S_j| of the true stems applied to the mixture STFT, the
  upper bound of what a magnitude-mask model on that STFT can reach (needs the stems, so never a real separator).
"""

import numpy as np
import torch

from trackformer.models.stft import band_bin_edges, istft, stft


def _window(n_fft: int) -> torch.Tensor:
    return torch.hann_window(n_fft)


def band_edges(n_bands: int, sample_rate: int, n_fft: int, lowest_edge_hz: float = 100.0) -> list[int]:
    """Bin indices [0, e_1, ..., F] of ``n_bands`` log-spaced bands over the F = n_fft // 2 + 1 bins (strictly
    increasing; a band is at least one bin wide)."""
    n_freqs = n_fft // 2 + 1
    if not 1 <= n_bands <= n_freqs:
        raise ValueError(f"n_bands must be in [1, {n_freqs}] for n_fft={n_fft}, got {n_bands}")
    inner = np.geomspace(lowest_edge_hz, sample_rate / 2, n_bands)[:-1] if n_bands > 1 else []
    return band_bin_edges(list(inner), n_freqs, sample_rate)


def band_split(mixture: torch.Tensor, sample_rate: int, *, n_bands: int = 8, n_fft: int = 1024, hop: int = 256,
               lowest_edge_hz: float = 100.0) -> torch.Tensor:
    """mixture (C, T) -> (n_bands, C, T) float32: the mixture's STFT split into log-spaced bands (binary masks)."""
    if mixture.dim() != 2:
        raise ValueError(f"mixture must be (C, T), got shape {tuple(mixture.shape)}")
    window = _window(n_fft)
    spec = stft(mixture.float(), n_fft, hop, window)  # (C, F, L)
    edges = band_edges(n_bands, sample_rate, n_fft, lowest_edge_hz)
    masks = torch.zeros(n_bands, spec.shape[-2], 1)
    for b in range(n_bands):
        masks[b, edges[b]:edges[b + 1]] = 1.0
    return istft(masks[:, None] * spec, n_fft, hop, window, mixture.shape[-1])


def ideal_ratio_mask(stems: torch.Tensor, *, n_fft: int = 1024, hop: int = 256) -> torch.Tensor:
    """stems (K, C, T) -> (K, C, T) float32: |S_k| / Σ_j |S_j| applied to the STFT of the stems' sum (oracle)."""
    if stems.dim() != 3:
        raise ValueError(f"stems must be (K, C, T), got shape {tuple(stems.shape)}")
    window = _window(n_fft)
    mags = stft(stems.float(), n_fft, hop, window).abs()
    masks = mags / mags.sum(0, keepdim=True).clamp_min(1e-8)
    return istft(masks * stft(stems.float().sum(0), n_fft, hop, window), n_fft, hop, window, stems.shape[-1])
