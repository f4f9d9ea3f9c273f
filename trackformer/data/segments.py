"""MixIT training examples: pairs of segments from two different songs, and the DataLoader that batches them.

An item is ``{"x1": (C, T), "x2": (C, T)}`` float32 (T = round(segment_seconds · sample_rate)); with
``return_stems`` also ``"stems1"``/``"stems2"`` (K_max, C, T) zero-padded past each song's stem count and
``"n_stems1"``/``"n_stems2"`` (int); then ``x`` is exactly ``stems.sum(0)`` (without stems, the tracks are summed
straight into ``x``: the same up to float rounding). The model sees ``x1 + x2``.
"""

import logging
import math
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from trackformer.data.audio import AudioFileError, check_channels, check_rate
from trackformer.data.songs import Song

log = logging.getLogger("trackformer.data")


class MixitPairs(Dataset):
    """Random pairs of segments from different songs (a map-style Dataset of ``examples_per_epoch`` items).

    Songs are drawn in proportion to their length (every second of audio equally likely), the segment start
    uniformly; a song with ``spans`` (a recording of a :class:`~trackformer.data.MusicCorpus`: its non-silent
    parts) counts only their frames and starts its segments inside them. A segment quieter than ``min_rms``
    (RMS over channels and time of its mixture) is redrawn, up to ``max_tries`` times in all, the second half
    from other songs; then the loudest of those draws is used (logged) rather than hang. A song whose audio
    fails to decode (or holds NaN/Inf) is logged, dropped for the rest of the run (in that worker) and replaced
    by another draw; if no usable song remains a RuntimeError says so.

    ``deterministic=False``: item i changes every epoch (the draw also uses torch's RNG, which the loader seeds
    per epoch and worker). ``deterministic=True``: item i is a function of (``seed``, i) only — the same
    validation set every epoch and for any number of workers.

    ``random_gain_db=(lo, hi)``: each segment (mixture and its stems alike) is scaled by a gain drawn uniformly
    in dB. Songs shorter than a segment are zero-padded.

    Augmentations that read the stems (MixIT still sees only the mixtures it is given):
    ``stem_gain_db=(lo, hi)`` scales each stem by its own gain (uniform in dB) before they are summed;
    ``stems_per_mixture=k`` makes each segment's mixture the sum of a random subset of 1..k of its audible stems
    (RMS >= ``min_rms``), the regime in which MixIT separates best (FUSS mixtures hold 1-4 sources). With
    ``return_stems`` the returned stems are the ones summed.
    """

    def __init__(self, songs: list[Song], *, segment_seconds: float, sample_rate: int, channels: int = 2,
                 examples_per_epoch: int = 1000, seed: int = 0, min_rms: float = 1e-3,
                 random_gain_db: tuple[float, float] | None = None, return_stems: bool = False,
                 deterministic: bool = False, max_stems: int = 4, max_tries: int = 10,
                 stem_gain_db: tuple[float, float] | None = None, stems_per_mixture: int | None = None):
        songs = list(songs)
        if len(songs) < 2:
            raise ValueError(f"MixitPairs needs at least 2 songs (pairs come from different songs), got {len(songs)}")
        self.sample_rate = check_rate("sample_rate", sample_rate)
        self.channels = check_channels(channels)
        for s in songs:
            if s.sample_rate != self.sample_rate or s.channels != self.channels:
                raise ValueError(f"song {s.name} is {s.sample_rate} Hz / {s.channels} ch, the dataset "
                                 f"{self.sample_rate} Hz / {self.channels} ch: index the songs at the same rate")
            if return_stems and s.num_stems > max_stems:
                raise ValueError(f"song {s.name} has {s.num_stems} stems > max_stems={max_stems}")
        if not (isinstance(segment_seconds, (int, float)) and math.isfinite(segment_seconds) and segment_seconds > 0):
            raise ValueError(f"segment_seconds must be a positive number, got {segment_seconds!r}")
        self.frames = round(segment_seconds * self.sample_rate)
        if self.frames < 1:
            raise ValueError(f"segment of {segment_seconds} s at {self.sample_rate} Hz has no samples")
        if examples_per_epoch < 1:
            raise ValueError(f"examples_per_epoch must be >= 1, got {examples_per_epoch}")
        for name, gains in (("random_gain_db", random_gain_db), ("stem_gain_db", stem_gain_db)):
            if gains is not None and not (len(gains) == 2 and gains[0] <= gains[1]):
                raise ValueError(f"{name} must be (lo, hi) with lo <= hi, got {gains}")
        if stems_per_mixture is not None and (isinstance(stems_per_mixture, bool)
                                              or not isinstance(stems_per_mixture, int) or stems_per_mixture < 1):
            raise ValueError(f"stems_per_mixture must be an int >= 1 or None, got {stems_per_mixture!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries}")
        self.songs, self.examples_per_epoch, self.seed = songs, int(examples_per_epoch), seed
        self.min_rms, self.random_gain_db, self.return_stems = float(min_rms), random_gain_db, return_stems
        self.deterministic, self.max_stems, self.max_tries = deterministic, max_stems, max_tries
        self.stem_gain_db, self.stems_per_mixture = stem_gain_db, stems_per_mixture
        self.needs_stems = return_stems or stem_gain_db is not None or stems_per_mixture is not None
        # cached per-song metadata: lengths in frames (from headers; a recording's non-silent frames) → weights
        self.spans = [_check_spans(s) for s in songs]  # (S, 2) int64 or None
        self.lengths = np.array([s.num_frames if sp is None else int((sp[:, 1] - sp[:, 0]).sum())
                                 for s, sp in zip(songs, self.spans)], dtype=np.int64)
        self.bad: set[int] = set()  # songs that failed to decode (per process)

    def __len__(self) -> int:
        return self.examples_per_epoch

    def _weights(self, exclude: int | None) -> np.ndarray:
        w = np.maximum(self.lengths, self.frames).astype(np.float64)  # a short song still gives one segment
        w[list(self.bad)] = 0
        if exclude is not None:
            w[exclude] = 0
        if w.sum() == 0:
            raise RuntimeError(f"no usable song left to draw from ({len(self.bad)} of {len(self.songs)} failed "
                               "to decode; see the log)")
        return w / w.sum()

    def _segment(self, rng: np.random.Generator, exclude: int | None) -> tuple[int, np.ndarray | None, np.ndarray]:
        """(song index, stems (K, C, T) or None when no stems are needed, mixture (C, T)) of a segment loud
        enough, from a song other than ``exclude``."""
        while True:  # ends: each failed decode removes a song for good, and _weights raises once none is left
            best, best_rms, song = None, -1.0, None
            for attempt in range(self.max_tries):
                if song is None or song in self.bad or attempt >= self.max_tries // 2:
                    song = int(rng.choice(len(self.songs), p=self._weights(exclude)))
                start = self._start(rng, song)
                try:
                    if self.needs_stems:
                        stems = self.songs[song].load_stems(start, self.frames).numpy()
                        mix = stems.sum(0)  # numpy: single-threaded, no contention with torch's thread pool
                    else:  # summed straight into one buffer: a quarter of the memory traffic
                        stems, mix = None, self.songs[song].load_mixture(start, self.frames).numpy()
                except (AudioFileError, OSError, RuntimeError) as e:
                    log.warning("dropping song %s: %s", self.songs[song].name, e)
                    self.bad.add(song)
                    continue
                rms = float(np.sqrt(np.mean(np.square(mix))))  # float32, pairwise summation
                if not math.isfinite(rms):
                    log.warning("dropping song %s: NaN or infinite samples near frame %d", self.songs[song].name,
                                start)
                    self.bad.add(song)
                    continue
                if rms >= self.min_rms:
                    return song, stems, mix
                if rms > best_rms:
                    best, best_rms = (song, stems, mix), rms
            if best is not None:
                log.info("no segment above min_rms=%g in %d tries; using one with RMS %.2g", self.min_rms,
                         self.max_tries, best_rms)
                return best

    def _start(self, rng: np.random.Generator, song: int) -> int:
        """A segment start: uniform over the song, or for a song with ``spans`` inside one of them (a span
        drawn in proportion to its length; a span shorter than a segment starts it at the span's start)."""
        spans = self.spans[song]
        if spans is None:
            return int(rng.integers(0, max(self.lengths[song] - self.frames, 0) + 1))
        k = 0 if len(spans) == 1 else int(rng.choice(len(spans), p=(spans[:, 1] - spans[:, 0]) / self.lengths[song]))
        a, b = int(spans[k, 0]), int(spans[k, 1])
        return int(rng.integers(a, max(b - self.frames, a) + 1))

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.examples_per_epoch:
            raise IndexError(f"index {index} out of range for {self.examples_per_epoch} examples")
        key = [self.seed, index]
        if not self.deterministic:
            key.append(int(torch.randint(0, 2**62, ()).item()))
        rng = np.random.default_rng(key)
        song1, stems1, mix1 = self._segment(rng, None)
        _, stems2, mix2 = self._segment(rng, song1)
        item = {}
        for i, stems, mix in ((1, stems1, mix1), (2, stems2, mix2)):
            if stems is not None and (self.stem_gain_db is not None or self.stems_per_mixture is not None):
                stems = self._augment_stems(rng, stems)
                mix = stems.sum(0)
            if self.random_gain_db is not None:
                gain = np.float32(10 ** (rng.uniform(*self.random_gain_db) / 20))
                if stems is None:
                    mix = mix * gain
                else:
                    stems = stems * gain
                    mix = stems.sum(0)
            item[f"x{i}"] = torch.from_numpy(mix)
            if self.return_stems:
                k = stems.shape[0]
                padded = np.zeros((self.max_stems, *stems.shape[1:]), np.float32)
                padded[:k] = stems
                item[f"stems{i}"] = torch.from_numpy(padded)
                item[f"n_stems{i}"] = k
        return item

    def _augment_stems(self, rng: np.random.Generator, stems: np.ndarray) -> np.ndarray:
        """Per-stem gains, then a random subset of 1..stems_per_mixture audible stems: (K', C, T) float32."""
        if self.stems_per_mixture is not None:
            rms = np.sqrt(np.mean(np.square(stems), axis=(1, 2)))
            audible = np.flatnonzero(rms >= self.min_rms)
            if audible.size:
                k = int(rng.integers(1, min(self.stems_per_mixture, audible.size) + 1))
                stems = stems[np.sort(rng.choice(audible, size=k, replace=False))]
        if self.stem_gain_db is not None:
            gains = 10 ** (rng.uniform(*self.stem_gain_db, size=stems.shape[0]) / 20)
            stems = stems * gains.astype(np.float32)[:, None, None]
        return stems


def _check_spans(song: Song) -> np.ndarray | None:
    """``song.spans`` as an (S, 2) int64 array of non-empty [start, end) frame spans inside the song, or None."""
    if song.spans is None:
        return None
    spans = np.asarray(song.spans, dtype=np.int64).reshape(-1, 2)
    if not len(spans) or (spans[:, 1] <= spans[:, 0]).any() or (spans < 0).any() or spans.max() > song.num_frames:
        raise ValueError(f"song {song.name}: spans must be a non-empty list of (start, end) frames with "
                         f"0 <= start < end <= {song.num_frames}, got {song.spans!r}")
    return spans


class MixedPairs(Dataset):
    """Items of ``real`` with probability ``real_fraction``, else of ``rendered`` (two :class:`MixitPairs` of the
    same length): real recordings mixed into stem-level training data. Which one item i comes from is a function
    of (``seed``, i) only, and each source's item i is its own function of i, so a deterministic pair of sources
    gives a deterministic mixture. Both sources must return the same keys (leave ``return_stems`` off)."""

    def __init__(self, real: Dataset, rendered: Dataset, *, real_fraction: float, seed: int = 0):
        if not 0.0 <= real_fraction <= 1.0:
            raise ValueError(f"real_fraction must be in [0, 1], got {real_fraction!r}")
        if len(real) != len(rendered):
            raise ValueError(f"the real and rendered datasets must have the same length, got {len(real)} and "
                             f"{len(rendered)}")
        self.real, self.rendered, self.real_fraction, self.seed = real, rendered, float(real_fraction), seed

    def __len__(self) -> int:
        return len(self.rendered)

    def is_real(self, index: int) -> bool:
        """Whether item ``index`` comes from the real recordings."""
        return bool(np.random.default_rng([self.seed, index, 1]).random() < self.real_fraction)

    def __getitem__(self, index: int) -> dict:
        return (self.real if self.is_real(index) else self.rendered)[index]


def _seed_worker(worker_id: int) -> None:
    """numpy / random seeds in a loader worker from torch's per-worker seed (different per epoch and worker)."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(dataset: Dataset, *, batch_size: int = 4, workers: int = 2, shuffle: bool = True, seed: int = 0,
                distributed: bool = False, drop_last: bool = False) -> DataLoader:
    """A DataLoader over ``dataset`` yielding dicts of stacked tensors (x1, x2: (B, C, T); n_stems: (B,) int64).

    Seeded: the order and, with workers, the per-epoch random draws depend on ``seed`` only (with
    ``workers=0`` the draws follow torch's global RNG: seed it with ``torch.manual_seed``). ``distributed=True`` shards
    with a :class:`DistributedSampler` (call ``loader.sampler.set_epoch(epoch)`` every epoch). Workers persist
    across epochs; memory is pinned when CUDA is available.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if distributed and not torch.distributed.is_initialized():
        raise ValueError("make_loader(distributed=True) needs torch.distributed initialised first "
                         "(torch.distributed.init_process_group)")
    generator = torch.Generator().manual_seed(seed)
    sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last) if distributed else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=workers, worker_init_fn=_seed_worker if workers else None,
                      generator=generator, persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
                      drop_last=drop_last)
