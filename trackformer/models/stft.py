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


class _OverlapAdd(torch.autograd.Function):
    """Windowed overlap-add of frames (B, L, S, n_fft) into (B, S, length) normalised by the window envelope.

    forward(frames, window (R, hop), inv_env (L + R - 1, hop), start, length) with n_fft = R·hop: R in-place
    ``addcmul_`` passes accumulate frame l's r-th hop-block times window block r at block l + r of a frame-major
    buffer (B, L + R - 1, S, hop), multiplied in place by 1/envelope, written source-major, and samples
    [start, start + length) are kept. Backward: the gradient times 1/envelope, framed back by R strided
    multiplies by the window blocks (no fold/unfold and no transposed copy of the frames).
    """

    @staticmethod
    def forward(ctx, frames, window, inv_env, start, length):
        b, l, s, _ = frames.shape
        r, hop = window.shape
        blocks = frames.view(b, l, s, r, hop)
        acc = frames.new_zeros(b, l + r - 1, s, hop)
        for i in range(r):
            acc[:, i:i + l].addcmul_(blocks[:, :, :, i], window[i])
        acc.mul_(inv_env[:, None])
        ctx.save_for_backward(window, inv_env)
        ctx.shape, ctx.start = (b, l, s), start
        return acc.transpose(1, 2).reshape(b, s, -1).narrow(-1, start, length).contiguous()

    @staticmethod
    def backward(ctx, grad):
        window, inv_env = ctx.saved_tensors
        (b, l, s), start = ctx.shape, ctx.start
        r, hop = window.shape
        full = grad.new_zeros(b, s, (l + r - 1) * hop)
        full[..., start:start + grad.shape[-1]] = grad
        scaled = (full.view(b, s, l + r - 1, hop) * inv_env).transpose(1, 2)  # (B, L + R - 1, S, hop) view
        grad_frames = grad.new_empty(b, l, s, r, hop)
        for i in range(r):
            torch.mul(scaled[:, i:i + l], window[i], out=grad_frames[:, :, :, i])
        return grad_frames.reshape(b, l, s, r * hop), None, None, None, None


def istft_frame_major(spec: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, length: int) -> torch.Tensor:
    """:func:`istft` of spectra stored frame-major: complex (B, L, *S, F) -> real float32 (B, *S, length).

    Equal to ``istft(spec.movedim(1, -1), ...)`` up to float rounding. When hop divides n_fft, the inverse FFT
    runs along the last (contiguous) axis and :class:`_OverlapAdd` sums the windowed frames, so the
    spectrogram is never transposed (forward or backward); otherwise this is that call.
    """
    b, l, *mid, f = spec.shape
    start, r = n_fft // 2, n_fft // hop
    if n_fft % hop or start + length > (l + r - 1) * hop:
        return istft(spec.movedim(1, -1), n_fft, hop, window, length)
    win = window.to(spec.real.dtype).view(r, hop)
    env = win.new_zeros(l + r - 1, hop)
    for i in range(r):
        env[i:i + l] += win[i].square()
    used = env.view(-1)[start:start + length]
    if used.abs().min() < 1e-11:  # torch.istft's nonzero overlap-add condition
        raise RuntimeError(f"istft: the window's overlap-add envelope is zero somewhere (n_fft={n_fft}, hop={hop})")
    frames = torch.fft.irfft(spec, n=n_fft, dim=-1)  # (B, L, *S, n_fft)
    inv_env = torch.where(env > 0, 1.0 / env, 0.0)  # zero only outside [start, start + length): 0, not inf
    out = _OverlapAdd.apply(frames.reshape(b, l, -1, n_fft), win, inv_env, start, length)
    return out.view(b, *mid, length)


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
