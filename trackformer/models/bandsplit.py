"""Band-split front end and dual-path blocks for :class:`trackformer.models.PerformerSeparator` (frontend="bandsplit").

As band-split RoPE transformers do for supervised music separation (BS-RoFormer, TF-Locoformer), the spectrum is
cut into K bands, narrow at low frequencies and wide at high ones (edges evenly spaced on the mel scale, at least
one bin each), and every band of every frame becomes its own token:

  features (B, L, C*F) -> per band k: LayerNorm + Linear (C*w_k -> d) -> tokens (B, K, L, d) + band embedding
  -> n_layers x [FAVOR+ attention along time within each band (B*K sequences of L frames), FFN;
                 exact attention across the K bands of each frame (B*L sequences of K tokens), FFN]
  -> per band: LayerNorm + MLP (d -> ffn -> M*C*w_k) -> mask logits (B, L, M, C, F)

Time is the long axis (5,168 frames for 30 s at 44.1 kHz), so it uses the fused FAVOR+ kernels; K is small (tens),
so attention across bands is exact softmax attention.
"""

import math

import torch
from torch import nn

from trackformer.models.stft import band_bin_edges
from trackformer.nn import PreNormBlock


def mel_band_edges(n_bands: int, n_freqs: int, sample_rate: int) -> list[int]:
    """Bin indices [0, e_1, ..., n_freqs] of ``n_bands`` bands evenly spaced on the mel scale (each >= 1 bin)."""
    if not 1 <= n_bands <= n_freqs:
        raise ValueError(f"n_bands must be in [1, {n_freqs}] (the number of frequency bins), got {n_bands}")
    top = 2595.0 * math.log10(1.0 + sample_rate / 2 / 700.0)  # Nyquist on the mel scale
    return band_bin_edges([700.0 * (10 ** (top * i / n_bands / 2595.0) - 1.0) for i in range(1, n_bands)],
                          n_freqs, sample_rate)


class BandSplit(nn.Module):
    """(B, L, C*F) features (channel-major: index c*F + f) -> (B, K, L, d) band tokens."""

    def __init__(self, edges: list[int], channels: int, n_freqs: int, d_model: int):
        super().__init__()
        self.edges, self.channels, self.n_freqs = edges, channels, n_freqs
        widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
        self.norms = nn.ModuleList(nn.LayerNorm(channels * w) for w in widths)
        self.projs = nn.ModuleList(nn.Linear(channels * w, d_model) for w in widths)
        self.band_embedding = nn.Parameter(torch.randn(len(widths), d_model) * 0.02)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        b, l, _ = feats.shape
        x = feats.view(b, l, self.channels, self.n_freqs)
        tokens = [proj(norm(x[..., lo:hi].reshape(b, l, -1)))
                  for (lo, hi), norm, proj in zip(zip(self.edges[:-1], self.edges[1:]), self.norms, self.projs)]
        return torch.stack(tokens, dim=1) + self.band_embedding[None, :, None, :]


class BandHeads(nn.Module):
    """(B, K, L, d) -> (B, L, n_out, C, F): per band LayerNorm + MLP, ``n_out`` values per channel and bin."""

    def __init__(self, edges: list[int], channels: int, d_model: int, hidden: int, n_out: int):
        super().__init__()
        self.edges, self.channels, self.n_out = edges, channels, n_out
        widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
        self.heads = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, hidden), nn.GELU(),
                          nn.Linear(hidden, n_out * channels * w)) for w in widths)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, _, l, _ = h.shape
        outs = [head(h[:, k]).view(b, l, self.n_out, self.channels, -1) for k, head in enumerate(self.heads)]
        return torch.cat(outs, dim=-1)


class DualPathBlock(nn.Module):
    """(B, K, L, d) -> (B, K, L, d): FAVOR+ along time within each band, then exact attention across bands."""

    def __init__(self, d_model: int, n_heads: int, ffn: int, dropout: float, nb_features: int, attention: str):
        super().__init__()
        common = dict(ffn=ffn, dropout=dropout, nb_features=nb_features)
        self.time = PreNormBlock(d_model, n_heads, attention=attention, **common)
        self.band = PreNormBlock(d_model, n_heads, attention="softmax", **common)

    def redraw_features(self, generator: torch.Generator | None = None) -> bool:
        """Redraws the time attention's random features (training mode only); see FavorAttention."""
        return self.time.redraw_features(generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, k, l, d = x.shape
        x = self.time(x.reshape(b * k, l, d)).view(b, k, l, d)
        x = self.band(x.transpose(1, 2).reshape(b * l, k, d)).view(b, l, k, d)
        return x.transpose(1, 2)
