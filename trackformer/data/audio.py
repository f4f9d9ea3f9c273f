"""Audio file I/O: metadata, partial reads, resampling (whole or block by block) and channel handling, writing
WAV/FLAC/MP3 whole or block by block, with errors that name the file.

Arrays are float32 numpy ``(C, T)`` (channels first, samples in [-1, 1]); sample rates in Hz; positions and
lengths in frames (samples per channel). Files are read with soundfile (libsndfile: WAV, FLAC, OGG, MP3, AIFF,
...); what it cannot read (m4a/AAC, video files, ...) is decoded with PyAV (``pip install av``) when installed.
"""

import math
import os
import uuid
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


class AudioFileError(ValueError):
    """An audio file is missing, empty, corrupt or has an unsupported layout (the message names the path)."""


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of one file: ``sample_rate`` (Hz), ``channels``, ``frames`` (samples per channel)."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    subtype: str = ""  # libsndfile's sample format ("PCM_16", "FLOAT", ...): integer PCM is read raw, then scaled
    decoder: str = "soundfile"  # or "pyav" for files libsndfile cannot read

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def audio_info(path: str) -> AudioInfo:
    """Reads only the header of ``path`` (a file PyAV decodes is decoded once to count its frames); raises
    AudioFileError if it is missing, unreadable, empty or > 2 ch (PyAV files with more channels are mixed down
    to stereo)."""
    if not os.path.isfile(path):
        raise AudioFileError(f"audio file not found: {path}")
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        return _pyav_info(path, e)
    if info.frames <= 0:
        raise AudioFileError(f"audio file is empty (0 frames): {path}")
    if info.channels not in (1, 2):
        raise AudioFileError(f"audio file has {info.channels} channels; only mono and stereo are supported: {path}")
    if info.samplerate <= 0:
        raise AudioFileError(f"audio file has an invalid sample rate {info.samplerate}: {path}")
    return AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames), info.subtype)


def _soundfile_extensions() -> set[str]:
    """File extensions libsndfile reads (its format names, plus the usual spellings)."""
    return {f.lower() for f in sf.available_formats()} | {"aif", "oga", "opus"}


def _pyav_info(path: str, sf_error: Exception) -> AudioInfo:
    """AudioInfo of a file soundfile could not read, through PyAV; AudioFileError saying what to install or why
    neither library reads it."""
    try:
        import av  # noqa: F401  (optional: bundles FFmpeg)
    except ImportError:
        ext = os.path.splitext(path)[1].lower().lstrip(".")
        hint = "" if ext in _soundfile_extensions() else (
            f"; soundfile does not read .{ext or '(no extension)'} files: install PyAV (pip install av) to read "
            "m4a/AAC, video and other FFmpeg formats")
        raise AudioFileError(f"cannot read audio file {path}: {sf_error}{hint}") from sf_error
    audio, rate = _pyav_decode(path, sf_error)
    if audio.shape[1] == 0:
        raise AudioFileError(f"audio file is empty (0 frames): {path}")
    return AudioInfo(path, rate, audio.shape[0], audio.shape[1], "FLOAT", decoder="pyav")


def _pyav_decode(path: str, sf_error: Exception | None = None) -> tuple[np.ndarray, int]:
    """The first audio stream of ``path`` decoded by PyAV: float32 (C, T) with C = 1 or 2 (more channels are
    mixed down to stereo by FFmpeg), and its sample rate."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise AudioFileError(f"cannot read audio file {path}: it has no audio stream")
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or 0)
            if rate <= 0:
                raise AudioFileError(f"audio file has an invalid sample rate {rate}: {path}")
            layout = "mono" if stream.codec_context.layout.nb_channels == 1 else "stereo"
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            blocks = []
            for frame in container.decode(stream):
                blocks += [f.to_ndarray() for f in resampler.resample(frame)]
            blocks += [f.to_ndarray() for f in resampler.resample(None)]
    except AudioFileError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        detail = f"soundfile: {sf_error}; PyAV: {e}" if sf_error is not None else f"PyAV: {e}"
        raise AudioFileError(f"cannot read audio file {path}: {detail}") from e
    channels = 1 if layout == "mono" else 2
    audio = np.concatenate(blocks, axis=1) if blocks else np.zeros((channels, 0), np.float32)
    return np.ascontiguousarray(audio, dtype=np.float32), rate


def check_rate(name: str, sr) -> int:
    """``sr`` as an int if it is a positive integer (Hz), else ValueError naming ``name``."""
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"{name} must be a positive integer number of Hz, got {sr!r}")
    return int(sr)


def check_channels(channels) -> int:
    """``channels`` if it is 1 or 2, else ValueError."""
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels!r}")
    return channels


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited polyphase resampling along the last axis (scipy ``resample_poly``, Kaiser window).

    Content above the lower of the two Nyquist frequencies is suppressed by ≥ 60 dB from 1.15× that Nyquist
    on (tests/test_data_audio.py); the pass band up to 0.87× is kept within 0.1 dB.
    """
    sr_in, sr_out = check_rate("sr_in", sr_in), check_rate("sr_out", sr_out)
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float32)
    ratio = Fraction(sr_out, sr_in)
    y = resample_poly(np.asarray(x, dtype=np.float32), ratio.numerator, ratio.denominator, axis=-1)
    return y.astype(np.float32, copy=False)


def _filter_margin(up: int, down: int) -> int:
    """Input frames on each side of an output frame that :func:`resample`'s filter reaches (its half length,
    10·max(up, down) taps at the up-sampled rate, in input frames, plus one)."""
    return math.ceil(10 * max(up, down) / up) + 1


def _aligned_input_start(out_start: int, up: int, down: int, margin: int) -> int:
    """First input frame to resample from to get output frame ``out_start`` exactly: ``margin`` frames before it,
    rounded down to a multiple of ``down`` (an input frame on a whole output frame)."""
    return max(0, (out_start * down - margin * up) // (up * down) * down)


class StreamResampler:
    """:func:`resample` of a signal that arrives block by block: ``push`` blocks (C, n) of it, then ``flush``;
    the outputs concatenated equal ``resample`` of the whole signal up to float rounding. Holds only the input
    the filter still needs (about ``10·max(up, down)/up`` frames plus one block)."""

    def __init__(self, sr_in: int, sr_out: int):
        self.sr_in, self.sr_out = check_rate("sr_in", sr_in), check_rate("sr_out", sr_out)
        ratio = Fraction(self.sr_out, self.sr_in)
        self.up, self.down = ratio.numerator, ratio.denominator
        self.margin = _filter_margin(self.up, self.down)
        self.buffer = None  # input frames [buffer_start, received)
        self.buffer_start = self.received = self.emitted = 0

    def push(self, block: np.ndarray) -> np.ndarray:
        """Adds input frames; returns the output frames that are final now (C, k), k possibly 0."""
        block = np.asarray(block, dtype=np.float32)
        self.buffer = block if self.buffer is None else np.concatenate([self.buffer, block], axis=-1)
        self.received += block.shape[-1]
        return self._emit(max(0, (self.received - self.margin) * self.up // self.down), final=False)

    def flush(self) -> np.ndarray:
        """The remaining output frames, as if the signal were followed by silence (as :func:`resample` does)."""
        if self.buffer is None:
            raise ValueError("StreamResampler.flush: no input was pushed")
        return self._emit(-(-self.received * self.up // self.down), final=True)

    def _emit(self, end: int, *, final: bool) -> np.ndarray:
        start = self.emitted
        if end <= start:
            return self.buffer[..., :0]
        a = _aligned_input_start(start, self.up, self.down, self.margin)
        b = self.received if final else min(self.received, -(-end * self.down // self.up) + self.margin)
        y = resample(self.buffer[..., a - self.buffer_start:b - self.buffer_start], self.sr_in, self.sr_out)
        offset = start - a * self.up // self.down
        out = y[..., offset:offset + end - start]
        self.emitted = end
        keep = _aligned_input_start(end, self.up, self.down, self.margin)
        self.buffer, self.buffer_start = self.buffer[..., keep - self.buffer_start:], keep
        return out


def read_audio(path: str, *, start: int = 0, frames: int | None = None, sample_rate: int | None = None,
               channels: int | None = None, info: AudioInfo | None = None) -> np.ndarray:
    """Reads ``frames`` frames from ``start`` (both counted at the OUTPUT ``sample_rate``) as float32 (C, T).

    Only the frames needed are read from disk (plus a few for the resampling filter's edges, so a segment is
    sample-identical to the same span of a full-file resample up to float rounding). Past the end of the file
    the result is zero-padded (after the resampling filter's few frames of ring-out), so exactly ``frames``
    frames come back. ``sample_rate``/``channels`` default to
    the file's; mono is duplicated to stereo, stereo averaged to mono. ``info`` (from :func:`audio_info`) saves
    one header read.
    """
    info = info or audio_info(path)
    sr_out = info.sample_rate if sample_rate is None else check_rate("sample_rate", sample_rate)
    if start < 0:
        raise ValueError(f"start must be >= 0 frames, got {start}")
    if frames is None:
        frames = max(math.ceil(info.frames * sr_out / info.sample_rate) - start, 0)
    if frames < 0:
        raise ValueError(f"frames must be >= 0, got {frames}")
    out = np.zeros((info.channels if channels is None else check_channels(channels), frames), dtype=np.float32)
    add_audio(out, info, start, sr_out)
    return out


def add_audio(out: np.ndarray, tracks, start: int, sample_rate: int) -> None:
    """Adds frames [start, start + T) (counted at ``sample_rate``) of one file or the sum of several into
    ``out`` (C, T) float32, in place, converting channels (mono → both, stereo → mean) and rate; past the end of
    a file only the resampling filter's ring-out (a few frames). ``tracks``: an AudioInfo or a sequence of them
    at ONE sample rate, summed before
    resampling (resampling is linear), so a stem or mixture of many tracks costs one resample, not one per track.
    The work horse of :func:`read_audio` and of loading stems and mixtures."""
    tracks = [tracks] if isinstance(tracks, AudioInfo) else list(tracks)
    rates = {t.sample_rate for t in tracks}
    if len(rates) != 1:
        raise ValueError(f"add_audio sums tracks at one sample rate, got {sorted(rates)} Hz")
    sr_in = rates.pop()
    frames = out.shape[1]
    ratio = Fraction(sample_rate, sr_in)
    up, down = ratio.numerator, ratio.denominator
    if frames == 0:
        return
    if up == down == 1:
        for t in (t for t in tracks if start < t.frames):
            data = _read_frames(t, start, min(start + frames, t.frames))
            _add_channels(out[:, :data.shape[1]], data)
        return
    # Read the input span covering [start, start + frames) plus the filter's half length on both sides,
    # starting on an input frame that maps to a whole output frame (a multiple of `down`).
    margin = _filter_margin(up, down)
    a = _aligned_input_start(start, up, down, margin)
    b = math.ceil((start + frames) * down / up) + margin
    live = [t for t in tracks if a < t.frames]  # files with frames in the span read
    if not live:
        return
    # Each file is a signal followed by silence, resampled as such: the filter's ring-out after a file's last
    # frame is kept, so the result is linear in the tracks (a stem, a mixture, a segment or the whole song all
    # agree up to float rounding) whichever files are summed before resampling.
    summed = np.zeros((out.shape[0], b - a), dtype=np.float32)
    for t in live:
        data = _read_frames(t, a, min(b, t.frames))
        _add_channels(summed[:, :data.shape[1]], data)
    off = start - a // down * up
    data = resample(summed, sr_in, sample_rate)[:, off:off + frames]
    out[:, :data.shape[1]] += data


def _add_channels(dst: np.ndarray, data: np.ndarray) -> None:
    """dst (C_out, n) += data (C_in, n), mono broadcast to stereo, stereo averaged to mono."""
    if data.shape[0] == 2 and dst.shape[0] == 1:
        dst += data.mean(axis=0, keepdims=True, dtype=np.float32)
    else:
        dst += data


_INT_PCM = {"PCM_16": (np.int16, 2.0 ** -15), "PCM_24": (np.int32, 2.0 ** -31), "PCM_32": (np.int32, 2.0 ** -31)}


def _read_frames(info: AudioInfo, a: int, b: int) -> np.ndarray:
    """Frames [a, b) of the file as float32 (C, b - a); AudioFileError if the data cannot be decoded or a
    floating-point file holds NaN/Inf.

    Integer PCM is read raw and scaled while transposing (one pass instead of libsndfile's conversion plus a
    transposing copy): about twice as fast for 16-bit WAV.
    """
    if info.decoder == "pyav":
        return _pyav_decode(info.path)[0][:, a:b]
    dtype, scale = _INT_PCM.get(info.subtype, (np.float32, None))
    try:
        data = sf.read(info.path, start=a, stop=b, dtype=dtype.__name__, always_2d=True)[0]
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioFileError(f"cannot decode audio file {info.path} (frames {a}..{b}): {e}") from e
    if scale is None:
        if not np.isfinite(data).all():
            raise AudioFileError(f"audio file {info.path} holds NaN or infinite samples (frames {a}..{b})")
        return np.ascontiguousarray(data.T)
    out = np.empty((data.shape[1], data.shape[0]), np.float32)
    np.multiply(data.T, np.float32(scale), out=out)
    return out


# Output formats by file extension: the sample formats each holds and their libsndfile subtypes.
OUTPUT_SUBTYPES = {
    "wav": {"int16": "PCM_16", "int24": "PCM_24", "float32": "FLOAT"},
    "flac": {"int16": "PCM_16", "int24": "PCM_24"},
    "mp3": {"int16": "MPEG_LAYER_III"},  # MP3 has no bit depth; int16 stands for "the default"
}


def output_subtype(ext: str, sample_format: str = "int16") -> str:
    """libsndfile subtype for writing ``ext`` ("wav", "flac", "mp3") with ``sample_format`` ("int16", "int24",
    "float32"); ValueError for a combination the format cannot hold."""
    ext = ext.lower().lstrip(".")
    if ext not in OUTPUT_SUBTYPES:
        raise ValueError(f"cannot write .{ext} files; output formats: {', '.join(OUTPUT_SUBTYPES)}")
    subtypes = OUTPUT_SUBTYPES[ext]
    if sample_format not in subtypes:
        if ext == "mp3":
            raise ValueError(f"MP3 has no bit depth: {sample_format} applies to WAV and FLAC only")
        raise ValueError(f"{ext.upper()} cannot hold {sample_format} samples; it holds {', '.join(subtypes)}")
    return subtypes[sample_format]


_PCM_STEPS = {"PCM_16": 2.0 ** -15, "PCM_24": 2.0 ** -23}  # one integer step of the format, in [-1, 1) units


class AudioWriter:
    """Writes float (C, n) blocks to ``path`` as they come, in the format of its extension with libsndfile
    ``subtype``; through a temporary file in the same folder, renamed over ``path`` by :meth:`close` (removed
    instead if the ``with`` block fails), so ``path`` is never a partial file. Integer and MP3 output is clipped
    to the format's range; ``clipped`` counts the samples that were. 16/24-bit samples are rounded to the nearest
    integer step here (libsndfile truncates, which biases every stem by half a step and their sum by M/2)."""

    def __init__(self, path: str, sample_rate: int, channels: int, *, subtype: str = "PCM_16"):
        check_rate("sample_rate", sample_rate)
        check_channels(channels)
        self.path, self.channels, self.clipped = path, channels, 0
        self.clip = subtype not in ("FLOAT", "DOUBLE")
        self.step = _PCM_STEPS.get(subtype)
        base, ext = os.path.splitext(path)
        self.tmp = f"{base}.{uuid.uuid4().hex[:8]}.tmp{ext}"
        try:
            self.file = sf.SoundFile(self.tmp, "w", samplerate=sample_rate, channels=channels, subtype=subtype)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)
            raise ValueError(f"cannot write {path} ({subtype} at {sample_rate} Hz, {channels} channels): {e}") from e

    def write(self, block: np.ndarray) -> None:
        """Appends ``block`` (C, n) float."""
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"audio to write to {self.path} must be ({self.channels}, T), got shape {block.shape}")
        if self.clip:
            top = 1.0 - (self.step or 0.0)
            over = (block > top) | (block < -1.0)
            if over.any():
                self.clipped += int(over.sum())
                block = np.clip(block, -1.0, top)
        if self.step is not None:
            block = np.round(block / self.step) * np.float32(self.step)
        self.file.write(block.T)

    def close(self) -> None:
        """Finishes the file and renames it to ``path``."""
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Drops the partial file."""
        self.file.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def __enter__(self) -> "AudioWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close() if exc_type is None else self.abort()


def write_audio(path: str, x: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16") -> int:
    """Writes (C, T) float audio to ``path`` (format from the extension) with :class:`AudioWriter`; returns the
    number of samples clipped to [-1, 1] (integer and MP3 subtypes)."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] not in (1, 2):
        raise ValueError(f"audio to write must be (C, T) with C in (1, 2), got shape {tuple(x.shape)}")
    with AudioWriter(path, sample_rate, x.shape[0], subtype=subtype) as writer:
        writer.write(x)
    return writer.clipped
