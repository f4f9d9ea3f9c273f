"""The song abstraction shared by every data source: a named set of stems at a target rate and channel count.

``Song.load_stems(start, frames)`` → float32 Tensor (K, C, T); ``load_mixture`` → (C, T), the sum of the stems
(there is no separate mixture file anywhere: the mixture is defined as that sum). Positions and lengths are in
frames at ``song.sample_rate``; seconds appear only in ``duration``.
"""

import hashlib
import logging
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from trackformer.data.audio import AudioInfo, add_audio, check_channels, check_rate

log = logging.getLogger("trackformer.data")


class Song:
    """Base class. Subclasses set ``name`` (unique id), ``stem_names``, ``sample_rate``, ``channels``, ``meta``
    (free-form facts: artist, song, genre, ...) and implement ``num_frames`` and
    ``_load(start, frames) -> np.ndarray (K, C, frames)``."""

    name: str
    stem_names: list[str]
    sample_rate: int
    channels: int
    meta: dict
    # non-silent spans [(start, end), ...] in frames at sample_rate (a recording indexed by
    # trackformer.data.corpus); None: every frame may start a segment
    spans: list[tuple[int, int]] | None = None

    @property
    def num_frames(self) -> int:
        """Length in frames at ``sample_rate`` (the longest stem)."""
        raise NotImplementedError

    @property
    def duration(self) -> float:
        """Length in seconds (from file headers or the event list; no audio is decoded)."""
        return self.num_frames / self.sample_rate

    @property
    def num_stems(self) -> int:
        return len(self.stem_names)

    def _load(self, start: int, frames: int) -> np.ndarray:
        raise NotImplementedError

    def _load_mixture(self, start: int, frames: int) -> np.ndarray:
        """(C, frames); subclasses may sum straight into one buffer."""
        return self._load(start, frames).sum(0)

    def _span(self, start: int, frames: int | None) -> tuple[int, int]:
        if start < 0:
            raise ValueError(f"{self.name}: start must be >= 0 frames, got {start}")
        if frames is None:
            frames = max(self.num_frames - start, 0)
        if frames < 0:
            raise ValueError(f"{self.name}: frames must be >= 0, got {frames}")
        return int(start), int(frames)

    def load_stems(self, start: int = 0, frames: int | None = None) -> torch.Tensor:
        """Stems (K, C, frames) float32 from frame ``start``; zero-padded past the end; whole song by default."""
        return torch.from_numpy(self._load(*self._span(start, frames)))

    def load_mixture(self, start: int = 0, frames: int | None = None) -> torch.Tensor:
        """The mixture (C, frames) = sum of the stems (equal to ``load_stems(...).sum(0)`` up to float rounding)."""
        return torch.from_numpy(self._load_mixture(*self._span(start, frames)))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, stems={self.stem_names}, {self.duration:.1f} s, "
                f"{self.sample_rate} Hz, {self.channels} ch)")


@dataclass(frozen=True)
class Stem:
    """One stem on disk: its name and the files (tracks) that are summed to form it."""

    name: str
    tracks: tuple[AudioInfo, ...]


class FileSong(Song):
    """A song whose stems are audio files (each stem the sum of its tracks), resampled and channel-converted on
    read. Only the frames asked for are read from disk."""

    def __init__(self, name: str, stems: list[Stem], *, sample_rate: int, channels: int, path: str = "",
                 meta: dict | None = None):
        if not stems or any(not s.tracks for s in stems):
            raise ValueError(f"{name}: a song needs at least one stem and every stem at least one track")
        self.name, self.path, self.meta = name, path, dict(meta or {})
        self.stems = list(stems)
        self.stem_names = [s.name for s in stems]
        self.sample_rate, self.channels = sample_rate, channels
        # ceil, as read_audio gives every frame that overlaps the file
        self._frames = max(-(-t.frames * sample_rate // t.sample_rate) for s in stems for t in s.tracks)
        # tracks grouped by source rate: each group is summed, then resampled once
        self._stem_groups = [_by_rate(s.tracks) for s in stems]
        self._mix_groups = _by_rate([t for s in stems for t in s.tracks])

    @property
    def num_frames(self) -> int:
        return self._frames

    def _load(self, start: int, frames: int) -> np.ndarray:
        out = np.zeros((len(self.stems), self.channels, frames), dtype=np.float32)
        for k, groups in enumerate(self._stem_groups):
            for group in groups:
                add_audio(out[k], group, start, self.sample_rate)
        return out

    def _load_mixture(self, start: int, frames: int) -> np.ndarray:
        out = np.zeros((self.channels, frames), dtype=np.float32)
        for group in self._mix_groups:
            add_audio(out, group, start, self.sample_rate)
        return out


def _by_rate(tracks) -> list[list[AudioInfo]]:
    """Tracks grouped by sample rate (in first-seen order)."""
    groups: dict[int, list[AudioInfo]] = {}
    for t in tracks:
        groups.setdefault(t.sample_rate, []).append(t)
    return list(groups.values())


def split_fraction(name: str, seed: int) -> float:
    """A stable number in [0, 1) from a song's id: the same for a song whatever other songs exist."""
    h = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


SPLIT_PARTS = ("train", "valid", "test")


def _check_fractions(valid_fraction: float, test_fraction: float) -> None:
    if not (0.0 <= valid_fraction <= 1.0 and 0.0 <= test_fraction <= 1.0 and valid_fraction + test_fraction <= 1.0):
        raise ValueError(f"valid_fraction and test_fraction must be in [0, 1] with a sum <= 1, got "
                         f"{valid_fraction} and {test_fraction}")


def split_of(name: str, *, valid_fraction: float, test_fraction: float = 0.0, seed: int = 0) -> str:
    """The part ("train", "valid" or "test") of the song named ``name``: with f = :func:`split_fraction`,
    "valid" iff f < valid_fraction, "test" iff valid_fraction <= f < valid_fraction + test_fraction, else "train"
    (so adding a test part never moves a song between train and valid's existing boundary)."""
    _check_fractions(valid_fraction, test_fraction)
    f = split_fraction(name, seed)
    return "valid" if f < valid_fraction else "test" if f < valid_fraction + test_fraction else "train"


class SongCollection:
    """A list of songs plus what was left out: ``songs``, ``skipped`` [(path, reason)], ``split``, ``summary``."""

    songs: list[Song]
    skipped: list[tuple[str, str]]

    def _index_settings(self, root: str, what: str, *, sample_rate: int, channels: int, max_stems: int | None):
        """Validates and stores the settings every collection shares; starts empty ``songs`` and ``skipped``."""
        self.sample_rate = check_rate("sample_rate", sample_rate)
        self.channels = check_channels(channels)
        if max_stems is not None and max_stems < 1:
            raise ValueError(f"max_stems must be >= 1 or None, got {max_stems}")
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{what} root is not a directory: {root}")
        self.max_stems = max_stems
        self.songs, self.skipped = [], []

    def __len__(self) -> int:
        return len(self.songs)

    def __getitem__(self, i: int) -> Song:
        return self.songs[i]

    def __iter__(self):
        return iter(self.songs)

    def split(self, part: str, *, valid_fraction: float = 0.2, test_fraction: float = 0.0,
              seed: int = 0) -> list[Song]:
        """Songs of the "train", "valid" or "test" part (:func:`split_of`: a hash of (seed, song name)), so the
        split is by song and a song never changes side when others are added. No test part by default (asking
        for it then is a ValueError)."""
        if part not in SPLIT_PARTS:
            raise ValueError(f"split part must be one of {list(SPLIT_PARTS)}, got {part!r}")
        _check_fractions(valid_fraction, test_fraction)
        if part == "test" and test_fraction == 0:
            raise ValueError("split part 'test' needs test_fraction > 0; without it the songs split into 'train' "
                             "and 'valid' only")
        return [s for s in self.songs
                if split_of(s.name, valid_fraction=valid_fraction, test_fraction=test_fraction, seed=seed) == part]

    def summary(self) -> dict:
        """Counts and durations: songs, total/min/max seconds, stems per song, stem-name counts, skipped."""
        durations = [s.duration for s in self.songs]
        return {
            "songs": len(self.songs),
            "hours": sum(durations) / 3600,
            "seconds_min": min(durations, default=0.0),
            "seconds_max": max(durations, default=0.0),
            "stems_per_song": dict(sorted(Counter(s.num_stems for s in self.songs).items())),
            "stem_names": dict(Counter(n for s in self.songs for n in s.stem_names).most_common()),
            "skipped": len(self.skipped),
        }

    def _skip(self, path: str, reason: str, *, error: bool = True) -> None:
        """Records a left-out song; errors are logged as warnings, policy (too many stems) as info."""
        self.skipped.append((path, reason))
        log.log(logging.WARNING if error else logging.INFO, "skipping %s: %s", path, reason)
