"""Multi-head FAVOR+ self-attention module (the Performer encoder's attention)."""

import torch
import torch.nn.functional as F
from torch import nn

from trackformer.kernels import check_features, check_head_dim, favor_attention, orthogonal_random_features

ATTENTIONS = ("favor", "softmax")


class FavorAttention(nn.Module):
    """Self-attention (B, L, d_model) → (B, L, d_model): fused qkv projection, attention per head, output projection.

    ``attention="favor"`` uses ``favor_attention`` with the buffer ``projection`` (nb_features, d_head) drawn by
    ``orthogonal_random_features``; ``attention="softmax"`` uses exact ``F.scaled_dot_product_attention``
    (comparison switch, same parameters). ``dropout`` is applied to the output projection's result in training.
    The features change only through ``redraw_features`` (never in eval mode) and are saved in the state dict.
    """

    def __init__(self, d_model: int, n_heads: int, *, nb_features: int = 256, dropout: float = 0.0,
                 attention: str = "favor", bias: bool = True):
        super().__init__()
        if n_heads < 1 or d_model < 1 or d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a positive multiple of n_heads ({n_heads})")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        d_head = d_model // n_heads
        if attention == "favor":
            check_head_dim(d_head, f"FAVOR+'s head dim d_model / n_heads = {d_model} / {n_heads}")
            check_features(nb_features, "nb_features")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model, self.n_heads, self.d_head, self.attention = d_model, n_heads, d_head, attention
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("projection", orthogonal_random_features(nb_features, d_head))

    @property
    def nb_features(self) -> int:
        return self.projection.shape[0]

    @torch.no_grad()
    def redraw_features(self, generator: torch.Generator | None = None) -> bool:
        """Draws a new projection in training mode (True); in eval mode keeps the features fixed (False)."""
        if not self.training:
            return False
        fresh = orthogonal_random_features(self.nb_features, self.d_head, generator=generator)
        self.projection.copy_(fresh.to(device=self.projection.device, dtype=self.projection.dtype))
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, d_model) → (B, L, d_model)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.d_model:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"FavorAttention expects input of shape (batch, length, {self.d_model}), got {shape}")
        b, length, _ = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4).unbind(0)
        if self.attention == "favor":
            y = favor_attention(q, k, v, self.projection)
        else:
            y = F.scaled_dot_product_attention(q, k, v)
        return self.dropout(self.out(y.transpose(1, 2).reshape(b, length, self.d_model)))
