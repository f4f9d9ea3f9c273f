"""PerformerSeparator: STFT -> log-magnitude -> Performer (FAVOR+) encoder -> M softmax masks -> iSTFT.

Shapes (B batch, C channels, T samples, F = n_fft/2 + 1 bins, L = 1 + T // hop frames, M sources):
  mixture (B, C, T) -> STFT (B, C, F, L) complex -> log(|X| + 1e-5) folded to (B, L, C*F), standardised per
  example (zero mean, unit variance: gain-invariant) -> Linear -> (B, L, d)
  + sinusoidal positions -> n_layers x [x + Attn(LN x); x + Drop(FFN(LN x)), FFN = Linear, GELU, Drop, Linear;
  FavorAttention applies the dropout to its own output] -> LN -> Linear d -> M*C*F -> softmax over M
  -> masks (B, M, C, F, L) -> masks * STFT -> iSTFT -> estimates (B, M, C, T).
``frontend="bandsplit"`` replaces the frame tokens by one token per (mel-spaced band, frame) and the blocks by
dual-path blocks (FAVOR+ along time within a band, exact attention across bands): see
:mod:`trackformer.models.bandsplit`.

Positions are fixed sinusoids (Vaswani et al.) added after the input Linear: FAVOR+ attention is
permutation-invariant, and sinusoids work for any number of frames (30 s at 44.1 kHz is 5,168) with no
length limit and no parameters. Masks are computed in float32 and sum to one per TF bin and channel, so the
estimates sum to the mixture up to float rounding (the STFT pair is a perfect reconstruction for any T >= 1).

Audio-MAE pre-training (:meth:`PerformerSeparator.pretrain_loss`) shares the encoder; its two extra parameters
(``mask_token``, ``mae_head``) are unused by separation. :meth:`encoder_state_dict` is the subset of the state
dict (input Linear, blocks including their random-feature projections, final LN) that carries over to MixIT.
"""

import dataclasses
import math

import torch
from torch import nn

from trackformer.kernels import check_features, check_head_dim
from trackformer.models._checks import check_mixture
from trackformer.models.bandsplit import BandHeads, BandSplit, DualPathBlock, mel_band_edges
from trackformer.models.stft import istft_frame_major, stft
from trackformer.nn import PreNormBlock
from trackformer.profiling import nvtx_range

_LOG_EPS = 1e-5  # floor of the log-magnitude features: log(1e-5) = -11.5
FRONTENDS = ("full", "bandsplit")
_ENCODER_PREFIXES = ("input_proj.", "blocks.", "norm.")


@dataclasses.dataclass
class SeparatorConfig:
    """Hyper-parameters of :class:`PerformerSeparator` (sample_rate in Hz; n_fft, hop in samples)."""

    n_fft: int = 1024
    hop: int = 256
    channels: int = 2
    n_sources: int = 8
    d_model: int = 256
    n_layers: int = 12
    n_heads: int = 4
    nb_features: int = 256
    ffn: int = 1024
    dropout: float = 0.1
    attention: str = "favor"
    sample_rate: int = 44100
    frontend: str = "full"
    n_bands: int = 16

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"SeparatorConfig.{f.name} must be a positive int, got {value!r}")
        if self.hop > self.n_fft:
            raise ValueError(f"SeparatorConfig: hop ({self.hop}) must not exceed n_fft ({self.n_fft})")
        if self.n_fft < 2:
            raise ValueError(f"SeparatorConfig: n_fft must be >= 2, got {self.n_fft}")
        if self.d_model % self.n_heads or self.d_model % 2:
            raise ValueError(f"SeparatorConfig: d_model ({self.d_model}) must be even and divisible by "
                             f"n_heads ({self.n_heads})")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SeparatorConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.frontend not in FRONTENDS:
            raise ValueError(f"SeparatorConfig.frontend must be one of {FRONTENDS}, got {self.frontend!r}")
        if self.frontend == "bandsplit" and self.n_bands > self.n_freqs:
            raise ValueError(f"SeparatorConfig.n_bands ({self.n_bands}) must not exceed the {self.n_freqs} "
                             f"frequency bins of n_fft={self.n_fft}")
        if self.attention not in ("favor", "softmax"):
            raise ValueError(f"SeparatorConfig.attention must be 'favor' or 'softmax', got {self.attention!r}")
        if self.attention == "favor":
            check_head_dim(self.d_model // self.n_heads,
                           f"SeparatorConfig: the FAVOR+ head dim d_model / n_heads = {self.d_model} / {self.n_heads}")
        check_features(self.nb_features, "SeparatorConfig.nb_features")

    @property
    def n_freqs(self) -> int:
        """F = n_fft // 2 + 1 frequency bins."""
        return self.n_fft // 2 + 1

    def to_dict(self) -> dict:
        """Plain dict of the fields (JSON/YAML-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config: dict) -> "SeparatorConfig":
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys raise ValueError."""
        unknown = set(config) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"SeparatorConfig.from_dict: unknown keys {sorted(unknown)}")
        return cls(**config)


class _ApplyMasks(torch.autograd.Function):
    """Real masks (B, L, M, C, F) times a complex spectrogram (B, L, 1, C, F) -> complex (B, L, M, C, F).

    The same product as ``masks * spec`` without its float-to-complex copy of the masks: forward writes the real
    and imaginary parts by two real multiplies; backward is Re(grad · conj(spec)), one complex multiply (autograd's
    version reduces over the 2-element real/imaginary axis, several times slower on the CPU)."""

    @staticmethod
    def forward(ctx, masks, spec):
        parts = torch.view_as_real(spec)
        out = masks.new_empty(*masks.shape, 2)
        torch.mul(masks, parts[..., 0], out=out[..., 0])
        torch.mul(masks, parts[..., 1], out=out[..., 1])
        ctx.save_for_backward(spec)
        return torch.view_as_complex(out)

    @staticmethod
    def backward(ctx, grad):
        (spec,) = ctx.saved_tensors
        return torch.mul(grad, spec.conj()).real, None


def sinusoidal_positions(length: int, dim: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(length, dim) sinusoidal position codes: sin on even, cos on odd columns, wavelengths 2π..2π·10⁴."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / dim))
    angles = pos * inv_freq  # (L, dim/2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).reshape(length, dim).to(dtype)


class PerformerSeparator(nn.Module):
    """Mask-based separator: mixture (B, C, T) -> estimates (B, M, C, T); see the module docstring."""

    def __init__(self, config: SeparatorConfig | None = None):
        super().__init__()
        config = SeparatorConfig() if config is None else config
        if not isinstance(config, SeparatorConfig):
            raise TypeError(f"PerformerSeparator expects a SeparatorConfig, got {type(config).__name__}; "
                            "use SeparatorConfig.from_dict(d) for a dict")
        self.config = config
        n_in = config.channels * config.n_freqs
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        d = config.d_model
        if config.frontend == "bandsplit":
            edges = mel_band_edges(config.n_bands, config.n_freqs, config.sample_rate)
            self.input_proj = BandSplit(edges, config.channels, config.n_freqs, d)
            self.blocks = nn.ModuleList(
                DualPathBlock(d, config.n_heads, config.ffn, config.dropout, config.nb_features, config.attention)
                for _ in range(config.n_layers))
            self.mask_head = BandHeads(edges, config.channels, d, config.ffn, config.n_sources)
            self.mae_head = BandHeads(edges, config.channels, d, config.ffn, 1)  # Audio-MAE pre-training only
        else:
            self.input_proj = nn.Linear(n_in, d)
            self.blocks = nn.ModuleList(
                PreNormBlock(d, config.n_heads, ffn=config.ffn, dropout=config.dropout,
                             nb_features=config.nb_features, attention=config.attention)
                for _ in range(config.n_layers))
            self.mask_head = nn.Linear(d, config.n_sources * n_in)
            self.mae_head = nn.Linear(d, n_in)  # Audio-MAE pre-training only
        self.norm = nn.LayerNorm(d)
        self.mask_token = nn.Parameter(torch.randn(d) * 0.02)  # Audio-MAE pre-training only

    has_masks = True  # spectrogram() and forward(return_masks=True[, return_magnitude=True]): the Separator protocol

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        """The channel count C the model takes and returns."""
        return self.config.channels

    def num_parameters(self, *, include_pretraining: bool = False) -> int:
        """Parameter count of the separator, without the MAE-only ``mask_token`` / ``mae_head`` by default."""
        skip = () if include_pretraining else ("mask_token", "mae_head.")
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith(skip))

    def redraw_features(self, generator: torch.Generator | None = None) -> bool:
        """Draws new random-feature projections in every layer, in training mode only (eval keeps them fixed).

        ``generator``: optional CPU generator for reproducible draws. Returns whether anything was redrawn. With
        attention="softmax" the projections are unused, so the outputs do not change.
        """
        return all([block.redraw_features(generator) for block in self.blocks])

    # ----------------------------------------------------------------------------------------------- pieces
    def spectrogram(self, mixture: torch.Tensor) -> torch.Tensor:
        """mixture (B, C, T) -> complex64 STFT (B, C, F, L), the one the masks apply to."""
        self._check(mixture)
        return self._stft(mixture)

    def _check(self, mixture) -> None:
        check_mixture(mixture, channels=self.config.channels, device=self.window.device)

    def _stft(self, mixture: torch.Tensor) -> torch.Tensor:
        return stft(mixture, self.config.n_fft, self.config.hop, self.window.float())

    def _features(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex (B, C, F, L) -> standardised log-magnitude folded over channels (B, L, C*F), float32.

        Each example's log(|X| + 1e-5) is shifted and scaled to zero mean and unit variance over all its frames
        and bins, so the features (and the MAE targets) do not depend on the recording's gain.
        """
        b, c, f, l = spec.shape
        logmag = torch.log(spec.abs() + _LOG_EPS).permute(0, 3, 1, 2).reshape(b, l, c * f)
        std, mean = torch.std_mean(logmag, dim=(1, 2), correction=0, keepdim=True)
        return (logmag - mean) / (std + _LOG_EPS)

    def _add_positions(self, h: torch.Tensor) -> torch.Tensor:
        """Time positions on (B, L, d) frames or (B, K, L, d) band tokens (the same codes in every band)."""
        return h + sinusoidal_positions(h.shape[-2], h.shape[-1], device=h.device, dtype=h.dtype)

    def _frame_values(self, head: nn.Module, h: torch.Tensor, n_out: int) -> torch.Tensor:
        """Encoder output (B, L, d) or (B, K, L, d) through ``head`` -> (B, L, n_out, C, F)."""
        if self.config.frontend == "bandsplit":
            return head(h)
        b, l, _ = h.shape
        return head(h).view(b, l, n_out, self.config.channels, self.config.n_freqs)

    def _encode(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            with nvtx_range(f"encoder/layer{i}"):
                h = block(h)
        return self.norm(h)

    # ----------------------------------------------------------------------------------------------- API
    def forward(self, mixture: torch.Tensor, return_masks: bool = False, return_magnitude: bool = False):
        """mixture (B, C, T) float -> estimates (B, M, C, T) in the mixture's dtype, exactly T samples.

        With ``return_masks=True`` also returns the float32 masks (B, M, C, F, L), which sum to 1 over M; with
        ``return_magnitude=True`` as well the mixture's magnitude spectrogram |X| (B, C, F, L) float32, the one
        the masks apply to (what the mask metrics and the diversity loss weigh by), from the same STFT.
        """
        if return_magnitude and not return_masks:
            raise ValueError("return_magnitude=True needs return_masks=True")
        probs, spec = self.frame_masks(mixture)
        estimates = self.synthesize(probs, spec, mixture.shape[-1]).to(mixture.dtype)
        masks = probs.permute(0, 2, 3, 4, 1)  # (B, M, C, F, L) view
        if return_magnitude:
            return estimates, masks, spec.abs()
        return (estimates, masks) if return_masks else estimates

    def frame_masks(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mixture (B, C, T) -> (masks (B, L, M, C, F) float32 frame-major, summing to 1 over M; the mixture's
        complex64 STFT (B, C, F, L)): the first half of :meth:`forward`, before the masks are applied."""
        self._check(mixture)
        cfg = self.config
        with nvtx_range("stft"):
            spec = self._stft(mixture)
            feats = self._features(spec).to(self.mask_token.dtype)
        h = self._encode(self._add_positions(self.input_proj(feats)))
        with nvtx_range("masks"):
            logits = self._frame_values(self.mask_head, h, cfg.n_sources)  # (B, L, M, C, F)
            return torch.softmax(logits, dim=2, dtype=torch.float32), spec

    def synthesize(self, masks: torch.Tensor, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Frame-major real masks (B, L, K, C, F) times the STFT ``spec`` (B, C, F, L), inverted -> float32 waveforms
        (B, K, C, length); linear in the masks (the second half of :meth:`forward`, for any number K of masks).

        Stays frame-major throughout: no float-to-complex copy of the masks, no transposed copy of the K spectra.
        """
        cfg = self.config
        with nvtx_range("masks"):
            est_spec = _ApplyMasks.apply(masks, spec.permute(0, 3, 1, 2).unsqueeze(2))  # (B, L, K, C, F) complex
        with nvtx_range("istft"):
            return istft_frame_major(est_spec, cfg.n_fft, cfg.hop, self.window.float(), length)

    def pretrain_loss(self, mixture: torch.Tensor, mask_ratio: float = 0.3,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Audio-MAE loss: mean squared error of the reconstructed (standardised) log-magnitude, masked frames only.

        round(mask_ratio * L) frames per example (at least one), chosen uniformly at random (``generator``, on
        the mixture's device, makes the choice reproducible), are replaced after the input Linear by the learned
        ``mask_token``; positions are added, the encoder runs, and ``mae_head`` predicts (B, L, C*F). Scalar.
        """
        if not isinstance(mask_ratio, (int, float)) or not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio!r}")
        self._check(mixture)
        if generator is not None and generator.device.type != mixture.device.type:
            raise ValueError(f"generator is on {generator.device} but the mixture is on {mixture.device}")
        with nvtx_range("stft"):
            target = self._features(self._stft(mixture))  # (B, L, C*F) float32, no gradient needed
        b, l, _ = target.shape
        n_mask = min(l, max(1, round(mask_ratio * l)))
        chosen = torch.rand(b, l, generator=generator, device=mixture.device).topk(n_mask, dim=1).indices
        masked = torch.zeros(b, l, dtype=torch.bool, device=mixture.device).scatter_(1, chosen, True)
        h = self.input_proj(target.to(self.mask_token.dtype))
        where = masked[:, None, :, None] if self.config.frontend == "bandsplit" else masked[..., None]  # all bands
        h = torch.where(where, self.mask_token.to(h.dtype), h)
        h = self._encode(self._add_positions(h))
        with nvtx_range("mae_head"):
            pred = self._frame_values(self.mae_head, h, 1).reshape(b, l, -1)
            err = (pred.float() - target).pow(2).mean(dim=-1)  # (B, L)
            return (err * masked).sum() / (b * n_mask)

    def encoder_state_dict(self) -> dict:
        """The encoder's part of the state dict (input Linear, blocks, final LN): what MAE pre-training passes on."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(_ENCODER_PREFIXES)}

    def load_encoder_state_dict(self, state_dict: dict) -> None:
        """Loads :meth:`encoder_state_dict` output (also accepts a full state dict; other keys are ignored).

        Raises ValueError naming the keys that are missing or whose shapes differ (a different config).
        """
        own = self.encoder_state_dict()
        given = {k: v for k, v in state_dict.items() if k.startswith(_ENCODER_PREFIXES)}
        missing = sorted(set(own) - set(given))
        unexpected = sorted(set(given) - set(own))
        if missing or unexpected:
            raise ValueError(f"encoder state dict does not fit this model: missing {missing[:5]}"
                             f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                             f"{'...' if len(unexpected) > 5 else ''} (different n_layers or attention?)")
        bad = [f"{k}: {tuple(given[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
               if given[k].shape != v.shape]
        if bad:
            raise ValueError(f"encoder state dict shapes differ from this model's (given vs model): {bad[:5]}")
        self.load_state_dict(given, strict=False)
