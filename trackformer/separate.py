"""Separation of audio of any length, rate and channel count with a trained model: chunked inference with
order-keeping cross-fades, streamed to the output files, analysis of the outputs, and the Python API
(:class:`Separator`).

Pipeline (audio (C, T) at ``sample_rate`` Hz), in :class:`SeparationStream`:
  1. resample to the model's rate, match its channel count (mono -> duplicated for a stereo model, averaged back
     afterwards; stereo into a mono model -> each channel separated on its own, the right channel's outputs
     matched to the left's);
  2. windows of ``chunk_seconds`` that overlap by ``overlap_seconds``; each window's M outputs are permuted to
     match the previous window's on the overlap (exact: Hungarian on the inner products, i.e. least total squared
     difference), then overlap-added with sin² / cos² cross-fades that sum to 1, so outputs that sum to their
     window also sum to the whole input;
  3. the mixture-consistency projection at the model's rate (residual spread evenly over the M outputs), so the
     stems sum to the input whatever the model (ConvTasNet is not consistent by construction);
     ``info["raw_consistency_db"]`` is the error before it (≈ −140 dB, float rounding, for the Performer, whose
     softmax masks sum to 1); then resampling back (block by block,
     :class:`~trackformer.data.audio.StreamResampler`) and the input's band above the model's Nyquist, which the
     resampling lost, given back to the outputs: with ``high_band="shares"`` (the default) each output gets its
     share of the model's top band frame by frame (:class:`TopBandShares`, as spleeter extends its masks), with
     "even" an equal share; either way the stems sum to the input.
Each stretch of output is final as soon as the window after it has been added, so the stream yields it then:
:func:`separate_file` writes it to the stem files at once and never holds the M outputs at full length (peak
memory ≈ the input plus a few windows); :func:`separate_waveform` collects the blocks into one tensor.

With ``analysis=True`` the stream also gathers the no-ground-truth statistics (effective mask count, mask
overlap) and a time-pooled picture of the mixture spectrogram and the M masks, window by window, reordered like
the outputs, each frame from the one window whose middle part holds it (:func:`owned_frames`; half the work
of scoring every window whole at half-window overlap): for a model with masks (the PerformerSeparator) its own
masks; for a model without (ConvTasNet) soft masks ``|S_m| / Σ_k |S_k|`` from the STFTs of its window outputs.
Both go through :class:`MaskSummary`, so a long song never needs a full-length (M, C, F, L) tensor.
"""

import contextlib
import json
import math
import os
import sys

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from trackformer.checkpoint_io import load_separator, resolve_device
from trackformer.data.audio import (
    AudioFileError,
    AudioWriter,
    StreamResampler,
    audio_info,
    check_rate,
    output_subtype,
    read_audio,
    resample,
)
from trackformer.metrics import effective_count, mask_statistics
from trackformer.mixit import mixture_consistency
from trackformer.models.stft import stft

SILENT_OUTPUT_DB = -40.0  # outputs with less energy than this, relative to the mix, are marked silent
SILENT_INPUT_PEAK = 1e-6  # an input whose peak is below this is rejected as silent
PICTURE_FRAMES = 1200  # the mask picture is pooled to at most this many columns
ANALYSIS_N_FFT, ANALYSIS_HOP = 1024, 256  # STFT of the stem-derived masks of a model without masks of its own
# Default overlap of consecutive windows, as a fraction of the window: half a window gives the output matching
# the most shared audio (demo model, 20 s held-out chorale: one-to-one SI-SNRi +0.50 dB at 1/2 vs -0.20 dB at 1/4).
DEFAULT_OVERLAP_FRACTION = 0.5
# The input's band above the model's Nyquist (lost by resampling down): "shares" gives each output the share of
# it that the output has of the model's top band [TOP_BAND[0], TOP_BAND[1]] x model rate, frame by frame (STFT
# frames of SHARE_SECONDS at the model's rate, hop half of that); "even" spreads it evenly over the outputs.
HIGH_BANDS = ("shares", "even")
TOP_BAND = (0.25, 0.45)  # fractions of the model's rate: 4.0-7.2 kHz for a 16 kHz model (below its anti-alias roll-off)
SHARE_SECONDS = 0.032
DEFAULT_FILENAME = "{track}/{stem}.{ext}"  # output path template below the output folder (as demucs)
FILENAME_KEYS = ("track", "trackext", "stem", "ext")


def _as_float_audio(audio, name: str = "audio") -> np.ndarray:
    """(C, T) numpy float32 copy-free when possible; clear errors for bad shape, NaN, empty or silent input."""
    if isinstance(audio, torch.Tensor):
        if not audio.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {audio.dtype}")
        audio = audio.detach().to("cpu", torch.float32).numpy()
    if not isinstance(audio, np.ndarray):
        raise TypeError(f"{name} must be a (channels, samples) numpy array or torch.Tensor, got {type(audio).__name__}")
    if audio.ndim != 2 or audio.shape[0] not in (1, 2):
        raise ValueError(f"{name} must have shape (channels, samples) with 1 or 2 channels, got {audio.shape}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise TypeError(f"{name} must be floating point, got {audio.dtype}")
    if audio.shape[1] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    audio = np.asarray(audio, dtype=np.float32)
    if not np.isfinite(audio).all():
        raise ValueError(f"{name} contains NaN or infinite samples")
    if np.abs(audio).max() < SILENT_INPUT_PEAK:
        raise ValueError(f"{name} is silent (peak below {SILENT_INPUT_PEAK}); there is nothing to separate")
    return audio


def model_channels(model: torch.nn.Module) -> int | None:
    """The channel count a model requires (``model.channels``, :class:`trackformer.registry.Separator`), or None
    if it takes any (also for a model that does not say)."""
    return getattr(model, "channels", None)


def model_device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def match_order(previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """Permutation ``perm`` (M,) such that ``current[perm]`` best matches ``previous``, both (M, ...).

    Maximises Σ_m <previous_m, current_perm[m]> exactly (Hungarian), which for a permutation is the same as
    minimising the total squared difference: loud outputs decide, near-silent ones do not disturb the match."""
    a = previous.reshape(previous.shape[0], -1).double()
    b = current.reshape(current.shape[0], -1).double()
    _, cols = linear_sum_assignment((a @ b.T).cpu().numpy(), maximize=True)
    return torch.as_tensor(cols, dtype=torch.long)


def chunk_starts(length: int, chunk: int, overlap: int) -> list[int]:
    """Start samples of windows of ``chunk`` samples overlapping by ``overlap`` that cover ``length``.

    The last window may be shorter (it ends at ``length``) but is always longer than ``overlap``."""
    if length <= chunk:
        return [0]
    hop = chunk - overlap
    return [i * hop for i in range(1 + math.ceil((length - chunk) / hop))]


def crossfade(length: int, overlap: int, *, fade_in: bool, fade_out: bool) -> torch.Tensor:
    """(length,) weights: sin² ramp up over the first ``overlap`` samples (if ``fade_in``), cos² ramp down over
    the last ``overlap`` (if ``fade_out``), 1 elsewhere; a ramp down and the next window's ramp up sum to 1."""
    w = torch.ones(length, dtype=torch.float64)
    ramp = torch.sin(0.5 * math.pi * (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap) ** 2
    if fade_in:
        w[:overlap] = ramp
    if fade_out:
        w[length - overlap:] = 1.0 - ramp
    return w.float()


def has_masks(model: torch.nn.Module) -> bool:
    """Whether ``model`` exposes its masks (``model.has_masks``, :class:`trackformer.registry.Separator`):
    ``model.spectrogram(x)`` and ``model(x, return_masks=True, return_magnitude=True)``."""
    return bool(getattr(model, "has_masks", False))


def _run_model(model, x: torch.Tensor, channels: int | None, masks: bool):
    """One window x (C, n) on the model's device -> (estimates (M, C, n) float32 on the CPU, masks, |X|), the
    estimates' channels adapted to x's; masks (M, C', F, L) and |X| (C', F, L) in the model's channels C', or
    None when ``masks`` is False."""
    c = x.shape[0]
    if channels is None or channels == c:
        batch = x[None]
    elif channels == 2:  # mono input, stereo model: duplicate, then average the two output channels
        batch = x.expand(2, -1)[None]
    else:  # stereo input, mono model: each channel on its own, right outputs ordered like the left ones
        batch = x[:, None]
    est, m, mag = model(batch, return_masks=True, return_magnitude=True) if masks else (model(batch), None, None)
    est = est.float().cpu()
    mag = mag.cpu() if masks else None
    m = m.float().cpu() if masks else None
    if channels is None or channels == c:
        return est[0], (m[0] if masks else None), (mag[0] if masks else None)
    if channels == 2:
        return est[0].mean(1, keepdim=True), (m[0] if masks else None), (mag[0] if masks else None)
    perm = match_order(est[0], est[1])
    est = torch.cat([est[0], est[1][perm]], dim=1)
    if masks:
        m, mag = torch.cat([m[0], m[1][perm]], dim=1), torch.cat([mag[0], mag[1]], dim=0)
    return est, m, mag


class MaskSummary:
    """Sums behind the mask metrics plus a time-pooled picture, gathered from blocks of STFT frames.

    ``total_samples`` and frame positions are in samples at ``sample_rate``; the picture has one column per
    ``hop * ceil(frames / picture_frames)`` samples (at most ``picture_frames`` columns). Each frame is given
    once (the separation passes each window's frames from the middle of its overlaps on, see
    :func:`owned_frames`), so the sums are those of the whole song.
    """

    def __init__(self, n_sources: int, n_freqs: int, total_samples: int, hop: int, sample_rate: int,
                 picture_frames: int = PICTURE_FRAMES):
        frames = 1 + total_samples // hop
        self.frames_per_column = max(1, math.ceil(frames / picture_frames))
        self.column_samples = hop * self.frames_per_column
        n_cols = 1 + total_samples // self.column_samples
        self.sample_rate = sample_rate
        self.stats = (torch.zeros(n_sources), torch.zeros(()), torch.zeros(()))
        self.mix = torch.zeros(n_freqs, n_cols, dtype=torch.float64)
        self.masks = torch.zeros(n_sources, n_freqs, n_cols, dtype=torch.float64)

    def add(self, masks: torch.Tensor, mag: torch.Tensor, positions: torch.Tensor) -> None:
        """masks (M, C, F, L), mag (C, F, L) float32 on the CPU; positions (L,) sample of each frame's centre."""
        self.stats = tuple(a + b for a, b in zip(self.stats, mask_statistics(masks, mag)))
        energy = mag.pow(2)  # (C, F, L)
        cols = (positions // self.column_samples).clamp(0, self.mix.shape[1] - 1).long()
        self.mix.index_add_(1, cols, energy.sum(0).double())
        self.masks.index_add_(2, cols, (masks * energy).sum(1).double())

    def result(self) -> dict:
        """{effective_mask_count, mask_overlap (None for silence), picture: {mix_db (F, W), masks (M, F, W)
        energy-weighted mean per cell, seconds_per_column, sample_rate}}."""
        output_energy, overlap_sum, mixture_energy = self.stats
        return dict(
            effective_mask_count=float(effective_count(output_energy)) if float(output_energy.sum()) > 0 else None,
            mask_overlap=float(overlap_sum / mixture_energy) if float(mixture_energy) > 0 else None,
            picture=dict(mix_db=(10 * torch.log10(self.mix / self.frames_per_column + 1e-10)).float(),
                         masks=(self.masks / self.mix.clamp_min(1e-20)).float(),
                         seconds_per_column=self.column_samples / self.sample_rate, sample_rate=self.sample_rate))


def owned_frames(start: int, end: int, hop: int, overlap: int, *, first: bool, next_start: int | None) -> torch.Tensor:
    """Indices of the STFT frames (centres ``start + k·hop``, k < 1 + (end − start) // hop) of the window
    [start, end) that it, and not a neighbour, gives to the mask statistics: from the middle of its overlap with
    the previous window (unless ``first``) up to the middle of its overlap with the next one (starting at
    ``next_start``; None for the last window), so every frame of the song is counted by exactly one window."""
    centres = start + torch.arange(1 + (end - start) // hop) * hop
    keep = torch.ones_like(centres, dtype=torch.bool)
    if not first:
        keep &= centres >= start + overlap // 2
    if next_start is not None:
        keep &= centres < next_start + overlap // 2
    return keep.nonzero()[:, 0]


def check_high_band(high_band: str) -> None:
    """ValueError naming the choices unless ``high_band`` is one of :data:`HIGH_BANDS`."""
    if high_band not in HIGH_BANDS:
        raise ValueError(f"high_band must be one of {', '.join(HIGH_BANDS)}, got {high_band!r}")


def resolve_window(info: dict, chunk_seconds: float | None = None, overlap: float | None = None, *,
                   names: tuple[str, str] = ("chunk_seconds", "overlap")) -> tuple[float, float]:
    """(chunk_seconds, overlap_seconds): the window defaults to the segment length the checkpoint was trained on
    (``info["segment_seconds"]``, from :func:`~trackformer.checkpoint_io.load_separator`), the overlap to
    :data:`DEFAULT_OVERLAP_FRACTION` of it; ``overlap`` is a fraction of the window in (0, 0.5]. ``names``: how
    the two settings are called in error messages (the CLI passes its flags)."""
    if chunk_seconds is None:
        chunk_seconds = info.get("segment_seconds") or 10.0
    if isinstance(chunk_seconds, bool) or not isinstance(chunk_seconds, (int, float)) or not chunk_seconds > 0 \
            or not math.isfinite(chunk_seconds):
        raise ValueError(f"{names[0]} must be a positive number of seconds, got {chunk_seconds!r}")
    overlap = DEFAULT_OVERLAP_FRACTION if overlap is None else overlap
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 < overlap <= 0.5:
        raise ValueError(f"{names[1]} is a fraction of the window in (0, 0.5] (0.25 = a quarter of it), got "
                         f"{overlap!r}")
    return float(chunk_seconds), float(chunk_seconds * overlap)


def _derived_masks(est: torch.Tensor, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft masks |S_m| / Σ_k |S_k| (M, C, F, L) of window outputs ``est`` (M, C, n), and |X| (C, F, L) of the
    window ``mix`` (C, n), for models without masks of their own."""
    window = torch.hann_window(ANALYSIS_N_FFT)
    spec = stft(est, ANALYSIS_N_FFT, ANALYSIS_HOP, window).abs()
    total = spec.sum(0, keepdim=True)
    return spec / torch.where(total > 0, total, torch.ones_like(total)), stft(mix, ANALYSIS_N_FFT, ANALYSIS_HOP,
                                                                                 window).abs()


class TopBandShares:
    """Each output's share of the model's top band, frame by frame, from the model-rate outputs as they stream.

    :meth:`push` blocks (M, C, n) of the stitched outputs at ``model_rate``; frames of ``n_fft`` samples (hop
    ``n_fft // 2``, Hann, no padding) are analysed as soon as they are complete. Share of output m in frame t and
    channel c: w = Σ_f |S_m(f, t)| / Σ_k Σ_f |S_k(f, t)| over the bins of ``band`` (Hz) — for a masking model
    the |X|-weighted mean of its mask over the band; 1/M where the band is silent. :meth:`add_shares`
    interpolates the shares linearly between frame centres (held constant before the first and after the last),
    so they sum to 1 at every sample: a per-frame, frequency-flat mask of the residual, as a mask on an STFT at
    the input's rate would be, applied as a smooth gain in time (no STFT at the input's rate needed).
    """

    def __init__(self, model_rate: int, band: tuple[float, float]):
        self.n_fft = max(64, 2 ** round(math.log2(SHARE_SECONDS * model_rate)))
        self.hop = self.n_fft // 2
        self.window = torch.hann_window(self.n_fft)
        freqs = torch.arange(self.n_fft // 2 + 1) * model_rate / self.n_fft
        self.bins = ((freqs >= band[0]) & (freqs <= band[1])).nonzero()[:, 0]
        if len(self.bins) == 0:
            raise ValueError(f"the band {band} Hz holds no STFT bin at {model_rate} Hz")
        self.buffer = None  # model-rate samples [start, start + buffer length) not yet fully analysed
        self.start = 0
        self.centres, self.shares = [], []  # (L,) frame centres in model-rate samples, (M, C, L) shares
        self.final = False

    def push(self, block: torch.Tensor) -> None:
        """Adds the next stretch (M, C, n) of the outputs at the model's rate."""
        self.buffer = block if self.buffer is None else torch.cat([self.buffer, block], dim=-1)
        n_frames = (self.buffer.shape[-1] - self.n_fft) // self.hop + 1
        if n_frames < 1:
            return
        used = (n_frames - 1) * self.hop + self.n_fft
        m, c, _ = self.buffer.shape
        spec = torch.stft(self.buffer[..., :used].reshape(m * c, used).float(), self.n_fft, self.hop,
                          window=self.window, center=False, return_complex=True)
        band = spec[:, self.bins].abs().sum(1).reshape(m, c, -1).double()  # (M, C, L)
        total = band.sum(0, keepdim=True)
        self.shares.append(torch.where(total > 0, band / torch.where(total > 0, total, 1.0), 1.0 / m))
        self.centres.append(self.start + self.n_fft / 2 + self.hop * torch.arange(n_frames, dtype=torch.float64))
        self.buffer = self.buffer[..., n_frames * self.hop:]
        self.start += n_frames * self.hop

    def known_until(self) -> float:
        """Model-rate time (samples) up to which :meth:`add_shares` is final: the last frame centre so far, or +inf
        once :meth:`finish` was called (later times hold the last shares)."""
        if self.final:
            return math.inf
        return float(self.centres[-1][-1]) if self.centres else -math.inf

    def finish(self) -> None:
        """No more blocks: a stream shorter than one frame gets one frame of its own, zero-padded."""
        if not self.centres and self.buffer is not None:
            length = self.buffer.shape[-1]
            self.push(torch.nn.functional.pad(self.buffer, (0, self.n_fft - length)))
        self.final = True

    def add_shares(self, block: torch.Tensor, residual: torch.Tensor, times: np.ndarray) -> torch.Tensor:
        """``block`` (M, C, n) plus each output's share of ``residual`` (C, n) at model-rate ``times`` (n,)
        (fractional samples, increasing from call to call): block_m + g_m·residual with g_m interpolated
        between frame centres, Σ_m g_m = 1. Frames before ``times[0]``'s are dropped afterwards."""
        centres = torch.cat(self.centres).numpy()
        shares = torch.cat(self.shares, dim=-1).float()  # (M, C, L)
        if shares.shape[-1] == 1:
            self.centres, self.shares = [torch.from_numpy(centres)], [shares]
            return block + shares * residual
        pos = np.interp(times, centres, np.arange(len(centres), dtype=np.float64))  # fractional frame index
        lo = np.minimum(pos.astype(np.int64), len(centres) - 2)  # increasing: frame lo for a run of samples
        first = int(lo[0])
        counts = torch.from_numpy(np.bincount(lo - first))
        m, c, _ = shares.shape
        rows = shares[..., first:first + len(counts) + 1].reshape(m * c, -1)  # (M·C, frames) contiguous
        # runs of equal frames: repeat_interleave of 2-D rows is far cheaper than a gather
        gains = rows[:, :-1].contiguous().repeat_interleave(counts, dim=-1)
        gains.addcmul_((rows[:, 1:] - rows[:, :-1]).repeat_interleave(counts, dim=-1),
                       torch.from_numpy((pos - lo).astype(np.float32)))
        self.centres, self.shares = [torch.from_numpy(centres[first:])], [shares[..., first:]]
        return block.addcmul(gains.reshape(m, c, -1), residual)


class SeparationStream:
    """One separation, produced block by block: iterate :meth:`blocks`, then read :meth:`info`.

    ``model(mixture (1, C', T')) -> (1, M, C', T')`` at ``model.sample_rate``; it runs on its own device, in
    eval mode. ``audio`` (C, T) at ``sample_rate`` Hz; windows of ``chunk_seconds`` (the segment length it was
    trained on) overlap by ``overlap_seconds`` (0 < overlap <= chunk / 2). ``high_band`` ("shares" or "even",
    :data:`HIGH_BANDS`): how the input's band above the model's Nyquist is split when the model's rate is below
    the input's. See the module docstring.
    """

    def __init__(self, model: torch.nn.Module, audio, sample_rate: int, chunk_seconds: float,
                 overlap_seconds: float, *, analysis: bool = False, progress: bool = False,
                 high_band: str = "shares"):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_high_band(high_band)
        self.audio = _as_float_audio(audio)
        self.sample_rate = check_rate("sample_rate", sample_rate)
        self.model_rate = int(getattr(model, "sample_rate", sample_rate))
        # how the band above the model's Nyquist is split; None when the model runs at the input's rate or above
        self.high_band = high_band if self.model_rate < self.sample_rate else None
        if not chunk_seconds > 0:
            raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds}")
        if not 0 < overlap_seconds <= chunk_seconds / 2:
            raise ValueError(f"overlap_seconds must be > 0 (to keep the output order across chunks) and at most "
                             f"half of chunk_seconds={chunk_seconds} (so only two windows overlap), got "
                             f"{overlap_seconds}")
        self.chunk = round(chunk_seconds * self.model_rate)
        self.overlap = min(round(overlap_seconds * self.model_rate), self.chunk // 2)  # odd chunks round down
        if self.overlap < 1:
            raise ValueError(f"chunk_seconds={chunk_seconds} and overlap_seconds={overlap_seconds} give "
                             f"{self.chunk} and {self.overlap} samples at {self.model_rate} Hz; need at least one "
                             "sample of overlap")
        self.model, self.analysis, self.progress = model, analysis, progress
        self.n_chunks = None
        self._summary = self._info = None
        self._raw = [0.0, 0.0]  # Σ (x − Σ_m out_m)², Σ x² at the model's rate, before the projection
        self._energy = None  # (M,) float64 energy of each final output
        self._mix_energy = 0.0

    def _model_rate_blocks(self, x: torch.Tensor):
        """Yields the stitched outputs (M, C, n) at the model's rate, in order, as each stretch is final."""
        model, chunk, overlap = self.model, self.chunk, self.overlap
        model.eval()
        device = model_device(model)
        channels = model_channels(model)
        own_masks = has_masks(model)
        hop = getattr(getattr(model, "config", None), "hop", 256) if own_masks else ANALYSIS_HOP
        length = x.shape[1]
        starts = chunk_starts(length, chunk, overlap)
        self.n_chunks = len(starts)
        previous = carry = None  # previous: the last window's reordered outputs on its last `overlap` samples
        bar = _progress(len(starts), self.progress)
        for i, start in enumerate(starts):
            end = min(start + chunk, length)
            window = x[:, start:end]
            est, masks, mag = _run_model(model, window.to(device), channels, self.analysis and own_masks)
            perm = match_order(previous, est[..., :overlap]) if previous is not None else torch.arange(est.shape[0])
            est = est[perm]
            previous = est[..., -overlap:]
            last = i == len(starts) - 1
            w = crossfade(end - start, overlap, fade_in=i > 0, fade_out=not last)
            if self.analysis:
                if own_masks:
                    masks = masks[perm]
                else:
                    masks, mag = _derived_masks(est, window)
                if self._summary is None:
                    self._summary = MaskSummary(est.shape[0], masks.shape[2], length, hop, self.model_rate)
                own = owned_frames(start, end, hop, overlap, first=i == 0, next_start=None if last else starts[i + 1])
                self._summary.add(masks[..., own], mag[..., own], start + own * hop)
            est = est * w
            if carry is not None:
                est[..., :carry.shape[-1]] += carry
            done = end - start if last else starts[i + 1] - start
            block, carry = est[..., :done], est[..., done:]
            self._raw[0] += float((window[..., :done] - block.sum(0)).double().pow(2).sum())
            self._raw[1] += float(window[..., :done].double().pow(2).sum())
            bar.update(1)
            yield block
        bar.close()

    @torch.inference_mode()
    def blocks(self):
        """Yields the final sources (M, C, n) float32 on the CPU at the input's rate and channel count, in
        order; concatenated over time they are the whole separation, summing to the input."""
        x = torch.from_numpy(resample(self.audio, self.sample_rate, self.model_rate))  # (C, T') at the model's rate
        back = StreamResampler(self.model_rate, self.sample_rate) if self.model_rate != self.sample_rate else None
        shares = TopBandShares(self.model_rate, tuple(f * self.model_rate for f in TOP_BAND)) \
            if self.high_band == "shares" else None
        mix = torch.from_numpy(self.audio)
        total, done, pos = mix.shape[1], 0, 0
        pending = None  # outputs at the input's rate that wait for their high-band shares
        for block in self._model_rate_blocks(x):
            m, c, n = block.shape
            if back is not None:  # exact below the model's Nyquist first: the residual left is what resampling lost
                block = mixture_consistency(block[None], x[None, :, pos:pos + n])[0]
                pos += n
                if shares is not None:
                    shares.push(block)
                block = torch.from_numpy(back.push(block.reshape(m * c, n).numpy())).reshape(m, c, -1)
            pending = block if pending is None else torch.cat([pending, block], dim=-1)
            ready = pending.shape[-1] if shares is None else min(pending.shape[-1], max(0, math.floor(
                shares.known_until() * self.sample_rate / self.model_rate) + 1 - done))
            done, out = self._finish(pending[..., :ready], mix, done, shares)
            pending = pending[..., ready:]
            if out.shape[-1]:
                yield out
        if back is not None:
            pending = torch.cat([pending, torch.from_numpy(back.flush()).reshape(m, c, -1)], dim=-1)
        if shares is not None:
            shares.finish()
        if done + pending.shape[-1] < total:  # resampling came a few samples short: zero outputs + the residual
            pending = torch.nn.functional.pad(pending, (0, total - done - pending.shape[-1]))
        done, out = self._finish(pending, mix, done, shares)
        if out.shape[-1]:
            yield out

    def _finish(self, block: torch.Tensor, mix: torch.Tensor, done: int,
                shares: TopBandShares | None) -> tuple[int, torch.Tensor]:
        """Cuts ``block`` (M, C, n) to the input's length and adds to each output m its share g_m of the residual
        x − Σ_k block_k (Σ_m g_m = 1, so the outputs sum to the input): g_m from ``shares`` at each sample, or
        1/M without (the mixture-consistency projection); counts the energies."""
        block = block[..., :mix.shape[1] - done]
        n = block.shape[-1]
        part = mix[:, done:done + n]
        if shares is None:
            block = mixture_consistency(block[None], part[None])[0]
        else:
            block = shares.add_shares(block, part - block.sum(0),
                                      (done + np.arange(n)) * (self.model_rate / self.sample_rate))
        energy = block.double().pow(2).sum(dim=(1, 2))
        self._energy = energy if self._energy is None else self._energy + energy
        self._mix_energy += float(part.double().pow(2).sum())
        return done + n, block

    def info(self) -> dict:
        """{model_sample_rate, high_band ("shares" / "even", None when the model's rate is not below the input's),
        chunk_samples, overlap_samples, n_chunks, raw_consistency_db, output_energy_db, silent_outputs} plus,
        with ``analysis``, ``analysis`` = {mask_source: "model" | "stems", effective_mask_count, mask_overlap,
        picture}; once :meth:`blocks` is exhausted."""
        if self._energy is None:
            raise RuntimeError("SeparationStream.info() is known once blocks() has been iterated to the end")
        raw_error = self._raw[0] / self._raw[1]
        info = dict(model_sample_rate=self.model_rate, high_band=self.high_band, chunk_samples=self.chunk,
                    overlap_samples=self.overlap, n_chunks=self.n_chunks,
                    raw_consistency_db=10 * math.log10(max(raw_error, 1e-30)),
                    **output_levels(self._energy, self._mix_energy))
        if self.analysis:
            info["analysis"] = dict(mask_source="model" if has_masks(self.model) else "stems",
                                    **self._summary.result())
        return info


def separate_waveform(model: torch.nn.Module, audio, sample_rate: int, chunk_seconds: float,
                      overlap_seconds: float, *, analysis: bool = False, progress: bool = False,
                      high_band: str = "shares") -> tuple[torch.Tensor, dict]:
    """Separates ``audio`` (C, T) at ``sample_rate`` Hz into the model's M outputs, in memory.

    Returns ``sources`` (M, C, T) float32 on the CPU at the input's rate and channel count, summing to
    ``audio``, and :meth:`SeparationStream.info`. Arguments as :class:`SeparationStream`."""
    stream = SeparationStream(model, audio, sample_rate, chunk_seconds, overlap_seconds, analysis=analysis,
                              progress=progress, high_band=high_band)
    sources, done = None, 0
    for block in stream.blocks():
        if sources is None:
            sources = torch.empty(block.shape[0], *stream.audio.shape)
        sources[..., done:done + block.shape[-1]] = block
        done += block.shape[-1]
    return sources, stream.info()


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="chunk", desc="separating", disable=not enabled or total < 2, file=sys.stderr)


def output_levels(energy: torch.Tensor, mixture_energy: float) -> dict:
    """{output_energy_db: energy of each output relative to the mixture's (dB, floor −300), silent_outputs:
    indices of outputs below −40 dB}; ``energy`` (M,) of the outputs, ``mixture_energy`` of the mixture."""
    mix_energy = max(float(mixture_energy), 1e-30)
    energy_db = [10 * math.log10(max(float(e) / mix_energy, 1e-30)) for e in energy]
    return dict(output_energy_db=energy_db, silent_outputs=[i for i, e in enumerate(energy_db) if e < SILENT_OUTPUT_DB])


# ---------------------------------------------------------------------------------------------- files
def stem_paths(song_path: str, out_dir: str, n_sources: int, *, filename: str = DEFAULT_FILENAME,
               ext: str = "wav") -> list[str]:
    """Output file of each of ``n_sources`` stems: ``out_dir/filename`` with {track} = the song's file name
    without extension, {trackext} = its extension, {stem} = source_1 ... source_M, {ext} = ``ext``. ValueError
    for a template with unknown keys or one that gives two stems the same file."""
    track, trackext = os.path.splitext(os.path.basename(song_path))
    try:
        paths = [os.path.join(out_dir, filename.format(track=track, trackext=trackext.lstrip("."),
                                                       stem=f"source_{i + 1}", ext=ext)) for i in range(n_sources)]
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"filename template {filename!r} is not valid ({type(err).__name__}: {err}); it may use "
                         f"{', '.join('{' + k + '}' for k in FILENAME_KEYS)}") from err
    if len(set(paths)) < n_sources:
        raise ValueError(f"filename template {filename!r} gives every stem the same file; include {{stem}}")
    return paths


def separate_file(model: torch.nn.Module, song_path: str, out_dir: str, *, chunk_seconds: float,
                  overlap_seconds: float, filename: str = DEFAULT_FILENAME, ext: str = "wav",
                  sample_format: str = "int16", plot: bool = True, progress: bool = False,
                  high_band: str = "shares") -> dict:
    """Separates one audio file, streaming each stem to :func:`stem_paths` (input rate and channels; ``ext``
    "wav" / "flac" / "mp3", ``sample_format`` "int16" / "int24" / "float32"), and writes ``separation.json`` and
    then (``plot``) ``masks.png`` into ``out_dir/<track>/``. Returns the JSON dict (``sources``: the stem files,
    ``picture``: masks.png or None). Without matplotlib the picture is skipped and ``picture_skipped`` says why
    (:func:`trackformer.plots.unavailable`). ``plot=False`` also skips the mask statistics
    (``effective_mask_count``, ``mask_overlap`` and ``mask_source`` are None): about a fifth of the work for a
    small model.

    Raises AudioFileError (a ValueError) for a missing/unreadable/empty file and ValueError for NaN or silence.
    """
    subtype = output_subtype(ext, sample_format)
    info = audio_info(song_path)
    audio = read_audio(song_path, info=info)
    try:
        audio = _as_float_audio(audio, name=f"audio file {song_path}")
    except ValueError as err:
        raise AudioFileError(str(err)) from err
    stream = SeparationStream(model, audio, info.sample_rate, chunk_seconds, overlap_seconds, analysis=plot,
                              progress=progress, high_band=high_band)
    files = writers = None
    with contextlib.ExitStack() as stack:
        for block in stream.blocks():
            if writers is None:
                files = stem_paths(song_path, out_dir, block.shape[0], filename=filename, ext=ext)
                writers = []
                for path in files:
                    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                    writers.append(stack.enter_context(AudioWriter(path, info.sample_rate, info.channels,
                                                                   subtype=subtype)))
            for writer, stem in zip(writers, block.numpy()):
                writer.write(stem)
    sep_info = stream.info()
    analysis = sep_info.pop("analysis", dict(mask_source=None, effective_mask_count=None, mask_overlap=None))
    picture = analysis.pop("picture", None)
    track_dir = os.path.join(out_dir, os.path.splitext(os.path.basename(song_path))[0])
    os.makedirs(track_dir, exist_ok=True)
    result = dict(input=os.path.abspath(song_path), sample_rate=info.sample_rate, channels=info.channels,
                  seconds=info.duration, sources=files, format=ext, sample_format=sample_format,
                  clipped_samples=sum(w.clipped for w in writers), picture=None, picture_skipped=None,
                  **sep_info, **analysis)
    result["json"] = os.path.join(track_dir, "separation.json")
    _write_json(result)  # the results first: the picture is optional
    if plot:
        from trackformer.plots import plot_masks, unavailable

        result["picture_skipped"] = unavailable()
        if result["picture_skipped"] is None:
            result["picture"] = plot_masks(
                picture["mix_db"].numpy(), picture["masks"].numpy(), sample_rate=picture["sample_rate"],
                input_sample_rate=info.sample_rate, seconds_per_column=picture["seconds_per_column"],
                path=os.path.join(track_dir, "masks.png"),
                title=f"{os.path.basename(song_path)} (masks from the {analysis['mask_source']})")
        _write_json(result)
    return result


def _write_json(result: dict) -> None:
    with open(result["json"], "w") as f:
        json.dump(result, f, indent=2)


# ---------------------------------------------------------------------------------------------- Python API
class Separator:
    """A trained model ready to separate, as demucs users know it::

        from trackformer import Separator
        sep = Separator()                       # the shipped model ("default"), CUDA when available
        stems = sep.separate_file("song.wav")   # {"source_1": (C, T) tensor, ..., "source_8": ...}
        stems = sep.separate_tensor(wav, 44100)

    ``model``: a shipped model's name or a checkpoint path (:func:`trackformer.pretrained.checkpoint_path`);
    ``device``: "auto" (CUDA when available), "cpu", "cuda", "cuda:N". Windows default to the segment length the
    model was trained on (``chunk_seconds``), overlapping by ``overlap`` of a window (a fraction in (0, 0.5]).
    ``high_band``: how the input's band above the model's Nyquist is split (:class:`SeparationStream`).
    The stems are unlabelled (the model learned without labels: source_1 is not "vocals"), at the input's rate
    and channel count, float32 on the CPU, and sum to the input.
    """

    def __init__(self, model: str = "default", device: str = "auto", *, chunk_seconds: float | None = None,
                 overlap: float | None = None, progress: bool = False, high_band: str = "shares"):
        from trackformer.pretrained import checkpoint_path, model_label

        self.checkpoint = checkpoint_path(model)
        self.name = model_label(model)
        self.device = resolve_device(device)
        self.model, self.info = load_separator(self.checkpoint, self.device)
        self.chunk_seconds, self.overlap_seconds = resolve_window(self.info, chunk_seconds, overlap)
        check_high_band(high_band)
        self.progress, self.high_band = progress, high_band

    @property
    def sample_rate(self) -> int:
        """The rate the model runs at (Hz); inputs at any rate are resampled to it and back."""
        return int(self.model.sample_rate)

    def separate_tensor(self, wav, sample_rate: int) -> dict[str, torch.Tensor]:
        """Stems of ``wav`` ((C, T) or (T,) mono, C = 1 or 2, float, torch or numpy, any device) at
        ``sample_rate`` Hz: {"source_1": tensor shaped like ``wav``, ...}."""
        if isinstance(wav, (torch.Tensor, np.ndarray)) and wav.ndim == 1:
            return {k: v[0] for k, v in self.separate_tensor(wav[None], sample_rate).items()}
        if isinstance(wav, (torch.Tensor, np.ndarray)) and wav.ndim != 2:
            raise ValueError(f"wav must be (channels, samples) or (samples,), got shape {tuple(wav.shape)}; "
                             "separate a batch one item at a time")
        sources, _ = separate_waveform(self.model, wav, sample_rate, self.chunk_seconds, self.overlap_seconds,
                                       progress=self.progress, high_band=self.high_band)
        return {f"source_{i + 1}": s for i, s in enumerate(sources)}

    def separate_file(self, path: str) -> dict[str, torch.Tensor]:
        """Stems of an audio file (anything soundfile reads; m4a/video with PyAV installed) at the file's rate
        (``trackformer.data.audio_info(path).sample_rate``): {"source_1": (C, T) tensor, ...}."""
        info = audio_info(path)
        try:
            audio = _as_float_audio(read_audio(path, info=info), name=f"audio file {path}")
        except ValueError as err:
            raise AudioFileError(str(err)) from err
        return self.separate_tensor(audio, info.sample_rate)
