"""Pre-LN transformer block with FAVOR+ (or exact) self-attention: the encoder layer of the separators."""

import torch
from torch import nn

from .attention import FavorAttention


class PreNormBlock(nn.Module):
    """(N, S, d_model) -> (N, S, d_model): x + Attn(LN x), then x + Drop(FFN(LN x)), FFN = Linear, GELU, Drop,
    Linear. FavorAttention applies the dropout to its own output; ``attention`` is "favor" or "softmax"."""

    def __init__(self, d_model: int, n_heads: int, *, ffn: int, dropout: float, nb_features: int,
                 attention: str = "favor"):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = FavorAttention(d_model, n_heads, nb_features=nb_features, dropout=dropout, attention=attention)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.dropout(self.ffn(self.norm2(x)))

    def redraw_features(self, generator: torch.Generator | None = None) -> bool:
        """Redraws the attention's random features (training mode only); see FavorAttention."""
        return self.attn.redraw_features(generator)
