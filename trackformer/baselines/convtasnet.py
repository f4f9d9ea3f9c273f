"""Conv-TasNet (Luo & Mesgarani, 2019) with torchaudio's default hyper-parameters, as the supervised-era baseline.

Architecture (torchaudio.models.ConvTasNet layout, written from its documented structure):
  encoder   Conv1d(1 -> N=512, kernel L=16, stride L/2, padding L/2, no bias)
  separator gLN (GroupNorm with one group, eps 1e-8) -> 1x1 Conv N -> B=128
            -> X=8 layers x R=3 stacks of ConvBlock (dilation 2^layer):
               1x1 Conv B -> H=512, PReLU, gLN, depthwise Conv(H, kernel P=3, dilation d), PReLU, gLN,
               then a residual 1x1 Conv H -> B (absent in the very last block) and a skip 1x1 Conv H -> B
            -> sum of skips -> PReLU -> 1x1 Conv B -> M*N -> sigmoid (or ReLU) masks
  decoder   ConvTranspose1d(N -> 1, kernel L, stride L/2, padding L/2, no bias) per source
With 8 sources: 5,381,169 parameters. Module and state-dict names follow torchaudio's (``encoder``,
``mask_generator.*``, ``decoder``), so a torchaudio ConvTasNet state dict of the same configuration loads as is
(checked once against torchaudio 2.11: identical outputs, bit for bit). Each channel of a multi-channel mixture
is separated on its own (channels are folded into the batch).
"""

import inspect

import torch
from torch import nn

from trackformer.models._checks import check_mixture
from trackformer.profiling import nvtx_range


def _gln(channels: int) -> nn.GroupNorm:
    """Global layer norm: statistics over channels and time, per example."""
    return nn.GroupNorm(num_groups=1, num_channels=channels, eps=1e-8)


class _ConvBlock(nn.Module):
    """One dilated depthwise-separable block: (B', io, frames) -> (residual or None, skip), each (B', io, frames)."""

    def __init__(self, io: int, hidden: int, kernel_size: int, dilation: int, residual: bool):
        super().__init__()
        self.conv_layers = nn.Sequential(
            nn.Conv1d(io, hidden, 1), nn.PReLU(), _gln(hidden),
            nn.Conv1d(hidden, hidden, kernel_size, padding=dilation * (kernel_size - 1) // 2, dilation=dilation,
                      groups=hidden),
            nn.PReLU(), _gln(hidden))
        self.res_out = nn.Conv1d(hidden, io, 1) if residual else None
        self.skip_out = nn.Conv1d(hidden, io, 1)

    def forward(self, x: torch.Tensor):
        h = self.conv_layers(x)
        return (self.res_out(h) if self.res_out is not None else None), self.skip_out(h)


class _MaskGenerator(nn.Module):
    """The temporal convolutional network: encoded mixture (B', N, frames) -> masks (B', M, N, frames)."""

    def __init__(self, n_sources: int, n_feats: int, kernel_size: int, bottleneck: int, hidden: int,
                 n_layers: int, n_stacks: int, activate: str):
        super().__init__()
        self.n_sources, self.n_feats = n_sources, n_feats
        self.input_norm = _gln(n_feats)
        self.input_conv = nn.Conv1d(n_feats, bottleneck, 1)
        self.conv_layers = nn.ModuleList(
            _ConvBlock(bottleneck, hidden, kernel_size, dilation=2 ** layer,
                       residual=not (stack == n_stacks - 1 and layer == n_layers - 1))
            for stack in range(n_stacks) for layer in range(n_layers))
        self.output_prelu = nn.PReLU()
        self.output_conv = nn.Conv1d(bottleneck, n_feats * n_sources, 1)
        self.mask_activate = nn.Sigmoid() if activate == "sigmoid" else nn.ReLU()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.input_conv(self.input_norm(feats))
        skips = 0.0
        for block in self.conv_layers:
            residual, skip = block(x)
            if residual is not None:
                x = x + residual
            skips = skips + skip
        masks = self.mask_activate(self.output_conv(self.output_prelu(skips)))
        return masks.view(feats.shape[0], self.n_sources, self.n_feats, -1)


class ConvTasNet(nn.Module):
    """Conv-TasNet separator: mixture (B, C, T) -> estimates (B, n_sources, C, T), exactly T samples.

    The arguments mirror ``torchaudio.models.ConvTasNet`` (``num_sources`` is ``n_sources`` here);
    ``sample_rate`` (Hz) is recorded for checkpoints and data loading, the network itself is rate-agnostic.
    ``config`` returns the constructor arguments as a dict; ``ConvTasNet.from_config(d)`` rebuilds the model.
    """

    def __init__(self, n_sources: int = 8, enc_kernel_size: int = 16, enc_num_feats: int = 512,
                 msk_kernel_size: int = 3, msk_num_feats: int = 128, msk_num_hidden_feats: int = 512,
                 msk_num_layers: int = 8, msk_num_stacks: int = 3, msk_activate: str = "sigmoid",
                 sample_rate: int = 44100):
        super().__init__()
        ints = dict(n_sources=n_sources, enc_kernel_size=enc_kernel_size, enc_num_feats=enc_num_feats,
                    msk_kernel_size=msk_kernel_size, msk_num_feats=msk_num_feats,
                    msk_num_hidden_feats=msk_num_hidden_feats, msk_num_layers=msk_num_layers,
                    msk_num_stacks=msk_num_stacks, sample_rate=sample_rate)
        for key, value in ints.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ConvTasNet: {key} must be a positive int, got {value!r}")
        if enc_kernel_size < 2:
            raise ValueError(f"ConvTasNet: enc_kernel_size must be >= 2 (stride is half of it), got {enc_kernel_size}")
        if msk_kernel_size % 2 == 0:
            raise ValueError(f"ConvTasNet: msk_kernel_size must be odd to keep the length, got {msk_kernel_size}")
        if msk_activate not in ("sigmoid", "relu"):
            raise ValueError(f"ConvTasNet: msk_activate must be 'sigmoid' or 'relu', got {msk_activate!r}")
        self._config = dict(ints, msk_activate=msk_activate)
        self.n_sources = n_sources
        self.sample_rate = sample_rate
        self.channels = None  # any channel count: each channel is separated on its own (the Separator protocol)
        self.has_masks = False
        self.enc_kernel_size = enc_kernel_size
        self.enc_stride = enc_kernel_size // 2
        self.enc_num_feats = enc_num_feats

        self.encoder = nn.Conv1d(1, enc_num_feats, enc_kernel_size, stride=self.enc_stride,
                                 padding=self.enc_stride, bias=False)
        self.mask_generator = _MaskGenerator(n_sources, enc_num_feats, msk_kernel_size, msk_num_feats,
                                             msk_num_hidden_feats, msk_num_layers, msk_num_stacks, msk_activate)
        self.decoder = nn.ConvTranspose1d(enc_num_feats, 1, enc_kernel_size, stride=self.enc_stride,
                                          padding=self.enc_stride, bias=False)

    @property
    def config(self) -> dict:
        """Constructor arguments (a fresh dict), enough to rebuild the model with :meth:`from_config`."""
        return dict(self._config)

    def to_dict(self) -> dict:
        """Same as :attr:`config` (the name PerformerSeparator's config uses)."""
        return self.config

    @classmethod
    def from_config(cls, config: dict) -> "ConvTasNet":
        """Builds a model from :attr:`config`; unknown keys raise ValueError."""
        unknown = set(config) - (set(inspect.signature(cls.__init__).parameters) - {"self"})
        if unknown:
            raise ValueError(f"ConvTasNet.from_config: unknown keys {sorted(unknown)}")
        return cls(**config)

    def _padded_length(self, length: int) -> int:
        """Smallest T' >= length with (T' - kernel % 2) divisible by the stride, so the decoder returns T'."""
        odd = self.enc_kernel_size % 2
        rem = (length - odd) % self.enc_stride
        return length if rem == 0 else length + self.enc_stride - rem

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """mixture (B, C, T) float -> estimates (B, M, C, T) in the mixture's dtype, exactly T samples."""
        param = self.encoder.weight
        check_mixture(mixture, channels=None, device=param.device)
        b, c, t = mixture.shape
        x = mixture.reshape(b * c, 1, t).to(param.dtype)
        padded = self._padded_length(t)
        if padded != t:
            x = nn.functional.pad(x, (0, padded - t))
        with nvtx_range("convtasnet/encoder"):
            feats = self.encoder(x)  # (B*C, N, frames)
        with nvtx_range("convtasnet/masks"):
            masks = self.mask_generator(feats)
        with nvtx_range("convtasnet/decoder"):
            masked = (masks * feats.unsqueeze(1)).reshape(b * c * self.n_sources, self.enc_num_feats, -1)
            out = self.decoder(masked)[..., :t]  # (B*C*M, 1, T)
        return out.reshape(b, c, self.n_sources, t).transpose(1, 2).to(mixture.dtype)
