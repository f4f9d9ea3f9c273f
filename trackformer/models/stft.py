"""STFT / iSTFT pair used by the separator: centred frames, Hann window, zero padding at the edges.

Zero ("constant") edge padding instead of torch's default reflection makes every length T >= 1 valid (reflection
needs T > n_fft / 2) and keeps the pair a perfect reconstruction: ``istft(stft(x), length=T) == x`` up to float
rounding, which is what makes masks that sum to one give outputs that sum to the input.
"""

import torch


def n_frames(length: int, hop: int) -> int:
    """Frames L of a centred STFT of ``length`` samples: 1 + length // hop."""
    return 1 + length // hop


def stft(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """Complex STFT of real signals ``x`` (..., T) -> (..., F = n_fft // 2 + 1, L = 1 + T // hop), float32 math."""
    lead = x.shape[:-1]
    spec = torch.stft(x.reshape(-1, x.shape[-1]).float(), n_fft, hop, window=window, center=True,
                      pad_mode="constant", return_complex=True)
    return spec.reshape(*lead, *spec.shape[-2:])


def istft(spec: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of :func:`stft`: complex (..., F, L) -> real float32 (..., length)."""
    lead = spec.shape[:-2]
    wave = torch.istft(spec.reshape(-1, *spec.shape[-2:]), n_fft, hop, window=window, center=True,
                       length=length)
    return wave.reshape(*lead, length)


def stft_frames(x: torch.Tensor, a: int, b: int, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """Frames [a, b) of the centred, zero-padded STFT of x (..., T) -> complex (..., F, b - a); equal to the
    same frames of :func:`stft` without computing the others."""
    t = x.shape[-1]
    lo, hi = a * hop - n_fft // 2, (b - 1) * hop + n_fft - n_fft // 2
    seg = x[..., max(lo, 0):min(hi, t)]
    seg = torch.nn.functional.pad(seg, (max(0, -lo), max(0, hi - t)))
    lead = seg.shape[:-1]
    spec = torch.stft(seg.reshape(-1, seg.shape[-1]).float(), n_fft, hop, window=window, center=False,
                      return_complex=True)
    return spec.reshape(*lead, *spec.shape[-2:])


def band_bin_edges(inner_hz, n_freqs: int, sample_rate: int) -> list[int]:
    """Bin indices [0, e_1, ..., n_freqs] of the bands whose inner boundaries are ``inner_hz`` (ascending, Hz) over
    the ``n_freqs`` bins from 0 Hz to Nyquist: strictly increasing, every band at least one bin wide."""
    n_bands = len(inner_hz) + 1
    if n_bands > n_freqs:
        raise ValueError(f"n_bands must be in [1, {n_freqs}] (the number of frequency bins), got {n_bands}")
    edges = [0]
    for i, hz in enumerate(inner_hz, start=1):
        b = round(hz / (sample_rate / 2) * (n_freqs - 1))
        edges.append(min(max(b, edges[-1] + 1), n_freqs - (n_bands - i)))
    return edges + [n_freqs]
