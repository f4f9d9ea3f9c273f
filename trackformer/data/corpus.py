"""A MixIT corpus from any folder of music: recordings without stems, indexed once for training.

    trackformer data index-music FOLDER OUT [--sample-rate 44100] [--channels 2]

:func:`index_music` decodes every audio file under FOLDER once (every format ``separate`` reads: WAV, FLAC, OGG
Vorbis/Opus, MP3, AIFF, and m4a/AAC and other FFmpeg formats with PyAV), finds its non-silent spans, splits the
songs by a hash of their relative path (80 % train, 10 % valid, 10 % test) and writes a decoded copy at one rate
and channel count, so training reads any excerpt with one seek and never decodes OGG per segment::

    OUT/index.json    {"format": "trackformer-music-corpus", "version": 1, "folder", "sample_rate", "channels",
                       "sample_format", "silence_db", "songs": [...], "skipped": [{"path", "reason"}]}
    OUT/audio/<id>.wav

Each song: ``name`` (its path relative to FOLDER, "/"-separated), ``source`` (absolute path), ``size`` (bytes) and
``mtime`` (to notice a changed file), ``duration`` (s), ``source_rate`` (Hz), ``source_channels``, ``rms_dbfs``
(RMS of the non-silent part), ``peak_dbfs``, ``spans`` ([[start, end], ...] in seconds: the non-silent parts),
``split``, ``audio`` (the copy, relative to OUT), ``frames`` (of the copy), ``clipped`` (samples clipped to
16 bit) and whatever ``meta`` the caller adds (package, license, ...).

:class:`MusicCorpus` reads it back as a :class:`~trackformer.data.SongCollection` of one-stem songs ("mixture":
the recording) whose ``spans`` keep :class:`~trackformer.data.MixitPairs` segments out of silence.
"""

import hashlib
import json
import logging
import math
import os
import re
import sys
import time

import numpy as np
import soundfile as sf

from trackformer.data.audio import (
    AUDIO_EXTENSIONS,
    AudioFileError,
    AudioInfo,
    AudioWriter,
    StreamResampler,
    _add_channels,
    audio_info,
    check_channels,
    check_rate,
    read_audio,
)
from trackformer.data.songs import FileSong, SongCollection, Stem, split_of

log = logging.getLogger("trackformer.data")

FORMAT, VERSION = "trackformer-music-corpus", 1
INDEX = "index.json"
# what separate reads: libsndfile's formats and, through PyAV, FFmpeg's (m4a/AAC, video soundtracks, ...)
MUSIC_EXTENSIONS = tuple(sorted({*AUDIO_EXTENSIONS, ".oga", ".opus", ".m4a", ".aac", ".mp4", ".m4b", ".wma",
                                 ".webm", ".mka", ".aifc"}))
VALID_FRACTION = TEST_FRACTION = 0.1  # the rest trains
SAMPLE_FORMATS = {"int16": "PCM_16", "float32": "FLOAT"}
WINDOW_SECONDS = 0.1  # silence is judged on windows of this length
MIN_GAP_SECONDS = 1.0  # quieter stretches shorter than this stay inside a span
MIN_SPAN_SECONDS = 0.5  # shorter non-silent bits (clicks) are not spans


def find_music(folder: str) -> list[str]:
    """Paths (relative to ``folder``, "/"-separated, sorted) of the audio files under it (hidden entries and
    links to a file already listed are left out)."""
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if f.startswith(".") or os.path.splitext(f)[1].lower() not in MUSIC_EXTENSIONS:
                continue
            path = os.path.join(dirpath, f)
            real = os.path.realpath(path)
            if real not in seen and os.path.isfile(real):
                seen.add(real)
                found.append(os.path.relpath(path, folder).replace(os.sep, "/"))
    return sorted(found)


class _Levels:
    """Mean power (over channels) of each 0.1 s window, and the peak, of audio that arrives block by block."""

    def __init__(self, sample_rate: int):
        self.sample_rate, self.w = sample_rate, max(1, round(WINDOW_SECONDS * sample_rate))
        self.carry, self.powers, self.peak, self.frames = None, [], 0.0, 0

    def add(self, block: np.ndarray) -> None:
        """Adds (C, n) float32 frames."""
        if not block.shape[1]:
            return
        self.frames += block.shape[1]
        self.peak = max(self.peak, float(np.abs(block).max()))
        x = block if self.carry is None else np.concatenate([self.carry, block], axis=1)
        full = x.shape[1] // self.w
        if full:
            windows = x[:, :full * self.w].reshape(x.shape[0], full, self.w)
            self.powers.append(np.square(windows, dtype=np.float32).mean(axis=(0, 2), dtype=np.float64))
        self.carry = x[:, full * self.w:].copy() if x.shape[1] > full * self.w else None

    def spans(self, silence_db: float) -> tuple[list[tuple[int, int]], float]:
        """(non-silent spans [(start, end), ...] in frames, RMS over them): runs of windows whose power is at
        least ``silence_db`` dBFS, quieter gaps under 1 s bridged, spans under 0.5 s dropped."""
        tail = [] if self.carry is None else [np.square(self.carry, dtype=np.float32).mean(dtype=np.float64)[None]]
        power = np.concatenate([*self.powers, *tail]) if self.frames else np.zeros(0)
        sizes = np.full(power.size, self.w, np.float64)
        if power.size:
            sizes[-1] = self.frames - (power.size - 1) * self.w
        loud = power >= 10 ** (silence_db / 10)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
        merged = []  # window indices [a, b)
        for a, b in zip(edges[::2].tolist(), edges[1::2].tolist()):
            if merged and (a - merged[-1][1]) * self.w < MIN_GAP_SECONDS * self.sample_rate:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        kept = [(a, b) for a, b in merged if sizes[a:b].sum() >= MIN_SPAN_SECONDS * self.sample_rate]
        energy = sum(float((power[a:b] * sizes[a:b]).sum()) for a, b in kept)
        frames = sum(float(sizes[a:b].sum()) for a, b in kept)
        spans = [(a * self.w, min(b * self.w, self.frames)) for a, b in kept]
        return spans, math.sqrt(energy / frames) if frames else 0.0


def nonsilent_spans(audio: np.ndarray, sample_rate: int, *, silence_db: float = -60.0) -> list[tuple[int, int]]:
    """Non-silent spans [(start, end), ...] in frames of ``audio`` (C, T): runs of 0.1 s windows whose RMS (over
    channels) is at least ``silence_db`` dBFS, quieter gaps under 1 s bridged, spans under 0.5 s dropped."""
    levels = _Levels(sample_rate)
    levels.add(np.asarray(audio, np.float32))
    return levels.spans(silence_db)[0]


def decoded_blocks(info: AudioInfo, sample_rate: int, channels: int, block_frames: int = 1 << 19):
    """The file of ``info`` decoded in order as float32 (C, n) blocks at ``sample_rate`` / ``channels`` (their
    concatenation equals :func:`read_audio` of the whole file up to float rounding), so a file of any length
    costs a few blocks of memory. Files only PyAV reads are decoded whole. AudioFileError naming the file if it
    cannot be decoded or holds NaN/Inf."""
    if info.decoder == "pyav":
        yield read_audio(info.path, sample_rate=sample_rate, channels=channels, info=info)
        return
    resampler = None if info.sample_rate == sample_rate else StreamResampler(info.sample_rate, sample_rate)
    try:
        with sf.SoundFile(info.path) as f:
            while True:
                data = f.read(block_frames, dtype="float32", always_2d=True)
                if not len(data):
                    break
                if not np.isfinite(data).all():
                    raise AudioFileError(f"audio file {info.path} holds NaN or infinite samples")
                x = np.zeros((channels, len(data)), np.float32)
                _add_channels(x, data.T)
                yield x if resampler is None else resampler.push(x)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioFileError(f"cannot decode audio file {info.path}: {e}") from e
    if resampler is not None and resampler.received:
        yield resampler.flush()


def _dbfs(value: float) -> float:
    """20·log10(value) rounded to 0.01 dB (floored at -200 dB)."""
    return round(20 * math.log10(max(value, 1e-10)), 2)


def _copy_name(name: str) -> str:
    """File name of a song's decoded copy: a readable tail of its path plus a hash of the whole path."""
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(name)[0].split("/")[-1])[:60]
    return f"{hashlib.sha1(name.encode()).hexdigest()[:12]}-{tail}.wav"


def _read_index(out: str) -> dict | None:
    path = os.path.join(out, INDEX)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable music-corpus index: {e}") from e
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ValueError(f"{path} is not a trackformer music-corpus index (no \"format\": \"{FORMAT}\")")
    if index.get("version") != VERSION:
        raise ValueError(f"{path} is version {index.get('version')!r} of the corpus index; this trackformer reads "
                         f"version {VERSION}: index the folder again into a new folder")
    return index


def _write_index(out: str, index: dict) -> None:
    """Writes index.json through a temporary file (never a half-written index)."""
    tmp = os.path.join(out, f".{INDEX}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(index, f, indent=1)
    os.replace(tmp, os.path.join(out, INDEX))


def _analyse(source: str, name: str, out: str, *, sample_rate: int, channels: int, subtype: str,
             silence_db: float) -> dict:
    """Decodes one file block by block into its copy and returns its index entry; AudioFileError if it cannot
    be decoded, ValueError if it is silent (then no copy is left)."""
    info = audio_info(source)
    rel = f"audio/{_copy_name(name)}"
    levels = _Levels(sample_rate)
    writer = AudioWriter(os.path.join(out, rel), sample_rate, channels, subtype=subtype)
    try:
        for block in decoded_blocks(info, sample_rate, channels):
            levels.add(block)
            writer.write(block)
        spans, rms = levels.spans(silence_db)
        if not spans:
            raise ValueError(f"silent: no {WINDOW_SECONDS:g} s window reaches {silence_db:g} dBFS")
    except BaseException:
        writer.abort()
        raise
    writer.close()
    stat = os.stat(source)
    return {"name": name, "source": os.path.abspath(source), "size": stat.st_size, "mtime": stat.st_mtime,
            "duration": round(levels.frames / sample_rate, 3), "source_rate": info.sample_rate,
            "source_channels": info.channels, "rms_dbfs": _dbfs(rms), "peak_dbfs": _dbfs(levels.peak),
            "spans": [[round(a / sample_rate, 3), round(b / sample_rate, 3)] for a, b in spans],
            "split": split_of(name, valid_fraction=VALID_FRACTION, test_fraction=TEST_FRACTION),
            "audio": rel, "frames": levels.frames, "clipped": writer.clipped}


def index_music(folder: str, out: str, *, sample_rate: int = 44100, channels: int = 2, sample_format: str = "int16",
                silence_db: float = -60.0, files: list[str] | None = None, meta: dict[str, dict] | None = None,
                progress: bool = True) -> dict:
    """Indexes the music under ``folder`` into the corpus folder ``out`` (see the module docstring); returns
    the index dict (also in ``out/index.json``).

    ``files``: the paths (relative to ``folder``) to index instead of every audio file under it; ``meta``:
    extra fields for a song's entry by relative path. Idempotent: a song already indexed from an unchanged
    file (same size and mtime, copy present) is kept as it is; songs whose file is gone leave the index (and
    their copy is deleted); files that failed before are tried again. A file that cannot be decoded, or is
    silent, is listed in ``skipped`` with the reason. ValueError for bad settings, a folder without audio, or an
    ``out`` indexed with other settings; FileNotFoundError for a missing folder.
    """
    sample_rate, channels = check_rate("sample_rate", sample_rate), check_channels(channels)
    if sample_format not in SAMPLE_FORMATS:
        raise ValueError(f"sample_format must be one of {list(SAMPLE_FORMATS)}, got {sample_format!r}")
    if not (isinstance(silence_db, (int, float)) and math.isfinite(silence_db) and silence_db < 0):
        raise ValueError(f"silence_db must be a negative number of dBFS, got {silence_db!r}")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"music folder is not a directory: {folder}")
    files = find_music(folder) if files is None else sorted(files)
    if not files:
        raise ValueError(f"no audio files under {folder} (looked for {', '.join(MUSIC_EXTENSIONS)})")
    settings = {"sample_rate": sample_rate, "channels": channels, "sample_format": sample_format,
                "silence_db": float(silence_db)}
    os.makedirs(os.path.join(out, "audio"), exist_ok=True)
    old = _read_index(out)
    if old is not None:
        differ = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if differ:
            raise ValueError(f"{out} holds a corpus indexed with other settings "
                             f"({', '.join(f'{k}: {a} there, {b} asked' for k, (a, b) in differ.items())}): "
                             "index into another folder, or ask for the same settings")
    done = {s["name"]: s for s in (old or {}).get("songs", [])}
    index = {"format": FORMAT, "version": VERSION, "folder": os.path.abspath(folder), **settings,
             "songs": [], "skipped": []}
    wanted = set(files)
    for name, entry in done.items():  # songs whose file left the folder (or the list): drop their copies
        if name not in wanted and os.path.isfile(os.path.join(out, entry["audio"])):
            os.unlink(os.path.join(out, entry["audio"]))
    from tqdm import tqdm

    bar = tqdm(files, unit="song", desc="indexing", disable=not progress, file=sys.stderr)
    last_write = time.monotonic()
    try:
        for name in bar:
            source = os.path.join(folder, name)
            entry = done.get(name)
            try:
                stat = os.stat(source)
                fresh = (entry is not None and entry.get("size") == stat.st_size and entry.get("mtime") == stat.st_mtime
                         and os.path.isfile(os.path.join(out, entry["audio"])))
                if not fresh:
                    entry = _analyse(source, name, out, sample_rate=sample_rate, channels=channels,
                                     subtype=SAMPLE_FORMATS[sample_format], silence_db=silence_db)
            except (AudioFileError, ValueError, OSError) as e:
                index["skipped"].append({"path": name, "reason": str(e)})
                log.warning("skipping %s: %s", source, e)
                continue
            index["songs"].append({**entry, **(meta or {}).get(name, {})})
            if time.monotonic() - last_write > 30:  # an interrupted run keeps what it did
                _write_index(out, index)
                last_write = time.monotonic()
    finally:
        bar.close()
        if len(index["songs"]) + len(index["skipped"]) < len(files):  # interrupted: keep the songs not reached
            reached = {s["name"] for s in index["songs"]} | {s["path"] for s in index["skipped"]}
            index["songs"] += [s for n, s in done.items() if n in wanted and n not in reached]
        _write_index(out, index)
    return index


def corpus_summary(index: dict) -> dict:
    """Songs, hours and songs per split of a corpus index; hours of non-silent audio; skipped count."""
    songs = index["songs"]
    split = {p: sum(s["split"] == p for s in songs) for p in ("train", "valid", "test")}
    return {"songs": len(songs), "hours": sum(s["duration"] for s in songs) / 3600,
            "nonsilent_hours": sum(b - a for s in songs for a, b in s["spans"]) / 3600,
            "split_songs": split,
            "split_hours": {p: sum(s["duration"] for s in songs if s["split"] == p) / 3600 for p in split},
            "skipped": len(index["skipped"])}


def is_corpus(root: str) -> bool:
    """Whether ``root`` holds a music-corpus index.json."""
    try:
        return _read_index(root) is not None
    except ValueError:
        return False


class AudioFolder(SongCollection):
    """Every audio file under ``root`` (:func:`find_music`: recursive, sorted) as a one-stem song ("mixture": the
    recording) named by its path relative to ``root``, read (and converted) at ``sample_rate`` / ``channels`` with
    no index: real music without stems for evaluation. ``skipped`` lists the unreadable files with the reason."""

    def __init__(self, root: str, *, sample_rate: int = 44100, channels: int = 2):
        self._index_settings(root, "audio folder", sample_rate=sample_rate, channels=channels, max_stems=None)
        self.root = root
        for name in find_music(root):
            path = os.path.join(root, name)
            try:
                info = audio_info(path)
            except AudioFileError as e:
                self._skip(path, str(e))
                continue
            self.songs.append(FileSong(name, [Stem("mixture", (info,))], sample_rate=self.sample_rate,
                                       channels=self.channels, path=path))


class MusicCorpus(SongCollection):
    """A corpus written by :func:`index_music`: one-stem songs ("mixture": the recording) read from the decoded
    copies (resampled and channel-converted on read if ``sample_rate``/``channels`` differ from the corpus's),
    each with its non-silent ``spans`` in frames at ``sample_rate``, ``meta`` = the rest of its index entry.
    ``split(part)`` ("train", "valid", "test") is the index's split (80/10/10 by a hash of the relative path).
    ``skipped``: songs whose copy is missing (index the folder again)."""

    def __init__(self, root: str, *, sample_rate: int = 44100, channels: int = 2):
        self._index_settings(root, "music corpus", sample_rate=sample_rate, channels=channels, max_stems=None)
        self.root = root
        index = _read_index(root)
        if index is None:
            raise FileNotFoundError(f"{root} holds no {INDEX}: make a corpus with `trackformer data index-music "
                                    f"FOLDER {root}` (or `trackformer data fetch-debian-music`)")
        self.index = index
        if (index["sample_rate"], index["channels"]) != (self.sample_rate, self.channels):
            log.info("corpus %s is %d Hz / %d ch; songs are converted to %d Hz / %d ch on every read", root,
                     index["sample_rate"], index["channels"], self.sample_rate, self.channels)
        subtype = SAMPLE_FORMATS[index["sample_format"]]
        for entry in index["songs"]:
            path = os.path.join(root, entry["audio"])
            if not os.path.isfile(path):
                self._skip(path, f"decoded copy of {entry['name']} is missing: index the folder again")
                continue
            info = AudioInfo(path, index["sample_rate"], index["channels"], entry["frames"], subtype)
            meta = {k: v for k, v in entry.items() if k not in ("name", "audio", "frames", "spans")}
            song = FileSong(entry["name"], [Stem("mixture", (info,))], sample_rate=self.sample_rate,
                            channels=self.channels, path=path, meta=meta)
            spans = [(round(a * self.sample_rate), min(round(b * self.sample_rate), song.num_frames))
                     for a, b in entry["spans"]]
            song.spans = [(a, b) for a, b in spans if b > a]
            self.songs.append(song)

    def split(self, part: str, *, valid_fraction: float = VALID_FRACTION, test_fraction: float = TEST_FRACTION,
              seed: int = 0) -> list:
        """Songs of "train", "valid" or "test" (by default the split written in the index)."""
        return super().split(part, valid_fraction=valid_fraction, test_fraction=test_fraction, seed=seed)

    def summary(self) -> dict:
        """SongCollection's summary plus the corpus's split sizes and non-silent hours."""
        present = {song.name for song in self.songs}
        s = corpus_summary({"songs": [e for e in self.index["songs"] if e["name"] in present], "skipped": []})
        return {**super().summary(), **{k: s[k] for k in ("nonsilent_hours", "split_songs", "split_hours")}}
