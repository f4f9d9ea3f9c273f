"""Evaluation of a trained separator on songs with ground-truth stems (MoisesDB layout or a stems folder).

Each song is cut into consecutive, non-overlapping segments of ``segment_seconds`` (a last, shorter piece is
dropped); segments whose references are all silent are skipped and counted. Per segment: the model's M outputs
(via :func:`trackformer.separate.separate_waveform`), :func:`trackformer.metrics.separation_scores` (one-to-one
and MixIT-style SI-SNR / SI-SNRi, silent stems excluded) and the mask metrics (the model's own masks, or masks
derived from the stems for a model without them). The model separates as ``trackformer separate`` does:
windows of its training segment, cross-faded; ``whole_song`` separates each song once, whole, and scores the
outputs segment by segment (what a user hears). The summary groups segments by their number of active stems and
reports SI-SNRi only over segments with at least two (row "2+"); one-stem segments report SI-SNR (the FUSS
convention). Non-learned baselines (the mixture, an 8-band split, the oracle ideal ratio mask) are scored on the
same segments, so a number means something.

Mixture of mixtures (:func:`evaluate_pairs`), the test for real music without stems: two held-out songs'
excerpts are summed, each excerpt one reference, and the outputs are scored on how well they recover each song
(pairs seeded and deterministic, excerpts non-silent, levels as they are or a seeded relative level).

Scores are taken at the data's own rate (44.1 kHz for MoisesDB), not the model's: ``separate_waveform``
resamples to the model and back, so whatever the model cannot reach counts. ``band_above_hz`` adds the
scores of the part above that frequency (:func:`trackformer.metrics.high_band_scores`).
"""

import json
import os
import time
from collections import Counter

import numpy as np
import torch

from trackformer.baselines.fixed import band_split, ideal_ratio_mask
from trackformer.metrics import SILENT_RMS, high_band_scores, separation_scores
from trackformer.separate import DEFAULT_OVERLAP_FRACTION, SILENT_INPUT_PEAK, model_channels, separate_waveform

STEM_MODES = ("auto", "musdb", "as-is")
BASELINES = ("mixture", "bands", "irm")
METRICS = ("one_to_one_sisnr", "one_to_one_sisnri", "one_to_one_sdr", "mixit_sisnr", "mixit_sisnri",
           "mixture_sisnr", "mask_overlap", "effective_mask_count", "band_mixit_sisnri", "band_one_to_one_sisnri")
# meaningless with one active reference (FUSS convention)
IMPROVEMENTS = ("one_to_one_sisnri", "mixit_sisnri", "band_mixit_sisnri", "band_one_to_one_sisnri")
MULTI = "2+"  # the summary row of every segment with at least two active references
SEGMENTS, PAIRS = "segments", "mixture-of-mixtures"  # the per-segment mode on stems, and on songs without
EXCERPT_MIN_DBFS = -60.0  # every quarter of a mixture-of-mixtures excerpt is louder than this (RMS, dB full scale)
EXCERPT_TRIES = 8  # random starts tried per excerpt before the song is scanned segment by segment
LEVEL_DB_MAX = 20.0  # largest --level-db (relative level of the two songs of a pair drawn in ± this)


def score_sources(sources: torch.Tensor, stems: torch.Tensor, sample_rate: int,
                  band_above_hz: float | None = None) -> dict:
    """:func:`separation_scores` of outputs ``sources`` (M, C, T) against ``stems`` (K, C, T) (mixture = their sum)
    plus, with ``band_above_hz``, :func:`high_band_scores` above that frequency (``band_*`` keys)."""
    mixture = stems.sum(0)
    scores = separation_scores(sources, stems, mixture)
    if band_above_hz is not None:
        scores.update(high_band_scores(sources, stems, mixture, sample_rate, band_above_hz))
    return scores


def evaluate_segment(model: torch.nn.Module, stems: torch.Tensor, sample_rate: int, *,
                     chunk_seconds: float | None = None, overlap_seconds: float | None = None,
                     band_above_hz: float | None = None, high_band: str = "shares") -> dict:
    """Scores of ``model`` on one segment: stems (K, C, T) at ``sample_rate`` Hz, mixture = their sum.

    The segment is separated as ``trackformer separate`` does it: resampled to the model's rate and back, windows
    of ``chunk_seconds`` (the model's training segment; default the whole segment in one window) overlapping by
    ``overlap_seconds`` (default half a window, as ``separate``), cross-faded, the band above the model's Nyquist
    split by ``high_band`` (:data:`trackformer.separate.HIGH_BANDS`); scored at ``sample_rate``.
    Returns the :func:`score_sources` dict plus mask_overlap, effective_mask_count (of the model's own masks
    where it has them, see ``mask_source``) and n_silent_outputs (below −40 dB of the mixture)."""
    mixture = stems.sum(0)
    chunk = stems.shape[-1] / sample_rate if chunk_seconds is None else chunk_seconds
    overlap = chunk * DEFAULT_OVERLAP_FRACTION if overlap_seconds is None else overlap_seconds
    sources, info = separate_waveform(model, mixture, sample_rate, chunk_seconds=chunk, overlap_seconds=overlap,
                                      analysis=True, high_band=high_band)
    scores = score_sources(sources, stems, sample_rate, band_above_hz)
    analysis = info["analysis"]
    scores.update(mask_overlap=analysis["mask_overlap"], effective_mask_count=analysis["effective_mask_count"],
                  mask_source=analysis["mask_source"], n_silent_outputs=len(info["silent_outputs"]))
    return scores


def baseline_sources(name: str, stems: torch.Tensor, sample_rate: int, *, n_fft: int, hop: int) -> torch.Tensor:
    """The outputs of non-learned baseline ``name`` (one of :data:`BASELINES`) for the mixture of ``stems``
    (K, C, T): the mixture itself once per reference (0 dB SI-SNRi by definition), a split into 8 log-spaced
    frequency bands, or the oracle ideal ratio mask (:mod:`trackformer.baselines.fixed`; STFT n_fft / hop)."""
    if name == "mixture":
        return stems.sum(0, keepdim=True).expand_as(stems)
    if name == "bands":
        return band_split(stems.sum(0), sample_rate, n_bands=8, n_fft=n_fft, hop=hop)
    if name == "irm":
        return ideal_ratio_mask(stems, n_fft=n_fft, hop=hop)
    raise ValueError(f"unknown baseline {name!r}; choose from {list(BASELINES)}")


def segments_of(songs, segment_seconds: float):
    """Yields (song, start frame, frames) for the consecutive full segments of each song, in order."""
    for song in songs:
        frames = round(segment_seconds * song.sample_rate)
        for start in range(0, song.num_frames - frames + 1, frames):
            yield song, start, frames


def _fast_fft_size(n: int) -> int:
    """The smallest even number >= n with no prime factor above 5 (FFTs of such sizes are fast)."""
    m = n + n % 2
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 2


def baseline_stft(model: torch.nn.Module, sample_rate: int, n_fft: int | None = None,
                  hop: int | None = None) -> tuple[int, int]:
    """(n_fft, hop) of the baselines at ``sample_rate``: as given, else the model's STFT window and hop durations
    (its config, default 1024 / 256 at its own rate) in samples at ``sample_rate`` (n_fft rounded up to a fast
    FFT size, :func:`_fast_fft_size`: 2880 for a 1024-sample window at 16 kHz scored at 44.1 kHz)."""
    config = getattr(model, "config", None)
    model_rate = getattr(model, "sample_rate", None) or sample_rate
    scale = sample_rate / model_rate
    if n_fft is None:
        n_fft = _fast_fft_size(round(getattr(config, "n_fft", 1024) * scale))
    if hop is None:
        hop = max(1, round(getattr(config, "hop", 256) * scale))
    return n_fft, hop


class _Rows:
    """The scored segments of the model and of each baseline, in order."""

    def __init__(self, model, baselines: tuple[str, ...], band_above_hz: float | None, n_fft, hop):
        for name in baselines:
            if name not in BASELINES:
                raise ValueError(f"unknown baseline {name!r}; choose from {list(BASELINES)}")
        self.model, self.baselines, self.band, self.stft = model, baselines, band_above_hz, (n_fft, hop)
        self.model_rows: list[dict] = []
        self.base_rows: dict[str, list[dict]] = {name: [] for name in baselines}

    def add(self, where: dict, scores: dict, stems: torch.Tensor, sample_rate: int) -> None:
        self.model_rows.append({**where, **scores})
        n_fft, hop = baseline_stft(self.model, sample_rate, *self.stft)
        for name in self.baselines:
            est = baseline_sources(name, stems, sample_rate, n_fft=n_fft, hop=hop)
            self.base_rows[name].append({**where, **score_sources(est, stems, sample_rate, self.band)})

    def result(self, **extra) -> dict:
        return dict(segments=self.model_rows, summary=summarize(self.model_rows),
                    baselines={name: dict(segments=rows, summary=summarize(rows))
                               for name, rows in self.base_rows.items()}, band_above_hz=self.band, **extra)


def _check_counts(segment_seconds: float, n: int | None) -> None:
    if not segment_seconds > 0:
        raise ValueError(f"segment_seconds must be > 0, got {segment_seconds}")
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 segments, got {n}")


def evaluate_songs(model: torch.nn.Module, songs, *, segment_seconds: float = 10.0, n: int | None = None,
                   chunk_seconds: float | None = None, overlap_seconds: float | None = None,
                   whole_song: bool = False, baselines: tuple[str, ...] = (), n_fft: int | None = None,
                   hop: int | None = None, band_above_hz: float | None = None, high_band: str = "shares",
                   progress: bool = False) -> dict:
    """Evaluates ``model`` on ``songs`` (trackformer.data Song objects) until ``n`` segments with an audible
    stem are scored (all when None), at the songs' rate (``song.sample_rate``).

    Per-segment mode (default): each segment is separated on its own (:func:`evaluate_segment`, windows of
    ``chunk_seconds``). ``whole_song=True``: each song is separated once, whole, the way ``trackformer separate``
    does it (windows, cross-fades, output order kept across windows), and the outputs are cut into the same
    segments for scoring (no mask metrics then). ``baselines`` (names from :data:`BASELINES`) are scored on the
    same segments (their STFT: ``n_fft`` / ``hop``, default :func:`baseline_stft`). ``band_above_hz`` adds the
    high-band scores (:func:`score_sources`); ``high_band``: how the separation splits the band above the model's
    Nyquist (:func:`evaluate_segment`).

    Returns {segments: [per-segment dicts with song, start_seconds and the scores], skipped_silent,
    summary: :func:`summarize`, baselines: {name: {segments, summary}}, mode, band_above_hz, seconds (wall
    time)}."""
    from tqdm import tqdm

    _check_counts(segment_seconds, n)
    rows = _Rows(model, tuple(baselines), band_above_hz, n_fft, hop)
    chunk = segment_seconds if chunk_seconds is None else chunk_seconds
    overlap = chunk * DEFAULT_OVERLAP_FRACTION if overlap_seconds is None else overlap_seconds
    t0 = time.perf_counter()
    skipped = 0
    total = sum(1 for _ in segments_of(songs, segment_seconds))
    bar = tqdm(total=total if n is None else min(n, total), unit="segment", desc="evaluating", disable=not progress)
    song_sources = {}  # whole-song mode: the current song's separated outputs
    for song, start, frames in segments_of(songs, segment_seconds):
        if n is not None and len(rows.model_rows) >= n:
            break
        stems = song.load_stems(start, frames)
        active = stems.pow(2).mean(dim=(1, 2)).sqrt() >= SILENT_RMS
        if not bool(active.any()) or stems.sum(0).abs().amax() < SILENT_INPUT_PEAK:  # nothing to score
            skipped += 1
            continue
        if whole_song:
            if song.name not in song_sources:
                song_sources = {song.name: separate_waveform(model, song.load_mixture(), song.sample_rate,
                                                             chunk_seconds=chunk, overlap_seconds=overlap,
                                                             high_band=high_band)[0]}
            scores = score_sources(song_sources[song.name][..., start:start + frames], stems, song.sample_rate,
                                   band_above_hz)
        else:
            scores = evaluate_segment(model, stems, song.sample_rate, chunk_seconds=chunk, overlap_seconds=overlap,
                                      band_above_hz=band_above_hz, high_band=high_band)
        rows.add(dict(song=song.name, start_seconds=start / song.sample_rate), scores, stems, song.sample_rate)
        bar.update(1)
    bar.close()
    return rows.result(skipped_silent=skipped, mode="whole-song" if whole_song else SEGMENTS, chunk_seconds=chunk,
                       overlap_seconds=overlap, high_band=high_band, seconds=time.perf_counter() - t0)


def audible_excerpt(x: torch.Tensor) -> bool:
    """Whether every quarter of ``x`` (C, T) has an RMS above :data:`EXCERPT_MIN_DBFS` (no fade, gap or
    silence in a mixture-of-mixtures reference)."""
    floor = 10 ** (EXCERPT_MIN_DBFS / 20)
    return all(float(q.double().pow(2).mean().sqrt()) >= floor for q in torch.tensor_split(x, 4, dim=-1))


class MixturePairs:
    """Mixtures of mixtures from songs without stems: seeded, deterministic pairs of excerpts of two different
    songs, each excerpt one reference.

    Rounds: each round shuffles the songs (``numpy.random.default_rng(seed)``) and pairs them two by two, so
    within a round every song is in one pair (with an odd count one sits out). Each song's excerpt of
    ``segment_seconds`` starts at a random frame (:data:`EXCERPT_TRIES` draws, then every consecutive segment
    in order) and must pass :func:`audible_excerpt`; a song without such an excerpt is dropped and listed in
    ``silent_songs``, songs shorter than a segment in ``short_songs``. The second song is scaled by a relative
    level drawn uniformly in ±``level_db`` dB (0: the levels as they are; the draw happens either way, so the
    pairs do not depend on it). Iterating yields (where, references (2, C, T)) for ``n`` pairs (None: one
    round), stopping early when a round yields none.
    """

    def __init__(self, songs, segment_seconds: float, *, seed: int = 0, level_db: float = 0.0,
                 n: int | None = None):
        _check_counts(segment_seconds, n)
        if not 0 <= level_db <= LEVEL_DB_MAX:
            raise ValueError(f"level_db must be in [0, {LEVEL_DB_MAX:g}] dB, got {level_db}")
        rates = {song.sample_rate for song in songs}
        if len(rates) > 1:
            raise ValueError(f"songs at several rates {sorted(rates)} Hz; load them at one")
        self.sample_rate = rates.pop() if rates else 0
        self.frames = round(segment_seconds * self.sample_rate)
        self.songs = [song for song in songs if song.num_frames >= self.frames]
        self.short_songs = [song.name for song in songs if song.num_frames < self.frames]
        if len(self.songs) < 2:
            raise ValueError(f"a mixture of mixtures needs at least 2 songs of at least {segment_seconds:g} s, got "
                             f"{len(self.songs)} ({len(self.short_songs)} shorter); try a smaller --segment")
        self.seed, self.level_db, self.n = seed, level_db, n
        self.silent_songs: list[str] = []

    def __len__(self) -> int:
        """Pairs iterating yields at most."""
        return len(self.songs) // 2 if self.n is None else self.n

    def _excerpt(self, song, rng: np.random.Generator) -> tuple[int, torch.Tensor] | None:
        last = song.num_frames - self.frames
        for start in [*rng.integers(0, last + 1, EXCERPT_TRIES).tolist(), *range(0, last + 1, self.frames)]:
            x = song.load_mixture(start, self.frames)
            if audible_excerpt(x):
                return start, x
        return None

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        dropped, done = set(), 0
        while True:
            pool = [song for song in self.songs if song.name not in dropped]
            found = 0
            for i, j in np.reshape(rng.permutation(len(pool))[:len(pool) // 2 * 2], (-1, 2)).tolist():
                a, b = pool[i], pool[j]
                gain_db = float(rng.uniform(-1.0, 1.0)) * self.level_db
                excerpts = [self._excerpt(song, rng) for song in (a, b)]
                for song, excerpt in zip((a, b), excerpts):
                    if excerpt is None and song.name not in dropped:
                        dropped.add(song.name)
                        self.silent_songs.append(song.name)
                if None in excerpts:
                    continue
                (start_a, x_a), (start_b, x_b) = excerpts
                where = dict(song=f"{a.name} + {b.name}", songs=[a.name, b.name],
                             start_seconds=[start_a / self.sample_rate, start_b / self.sample_rate], gain_db=gain_db)
                yield where, torch.stack([x_a, x_b * 10 ** (gain_db / 20)])
                found += 1
                done += 1
                if self.n is not None and done >= self.n:
                    return
            if self.n is None or not found:
                return


def evaluate_pairs(model: torch.nn.Module, songs, *, segment_seconds: float = 10.0, n: int | None = None,
                   seed: int = 0, level_db: float = 0.0, chunk_seconds: float | None = None,
                   overlap_seconds: float | None = None, baselines: tuple[str, ...] = (), n_fft: int | None = None,
                   hop: int | None = None, band_above_hz: float | None = None, high_band: str = "shares",
                   progress: bool = False) -> dict:
    """Mixture of mixtures: ``model`` on the sums of :class:`MixturePairs` of ``songs`` (their mixtures; songs
    without stems), each song's excerpt one reference, scored like :func:`evaluate_songs` (one-to-one and
    MixIT-style SI-SNRi, mask metrics, ``baselines``, ``band_above_hz``, ``high_band``) at the songs' rate.

    Returns the :func:`evaluate_songs` dict (segments carry ``songs``, ``start_seconds`` per song and
    ``gain_db``) plus seed, level_db, silent_songs and short_songs; mode ``"mixture-of-mixtures"``."""
    from tqdm import tqdm

    pairs = MixturePairs(songs, segment_seconds, seed=seed, level_db=level_db, n=n)
    rows = _Rows(model, tuple(baselines), band_above_hz, n_fft, hop)
    chunk = segment_seconds if chunk_seconds is None else chunk_seconds
    overlap = chunk * DEFAULT_OVERLAP_FRACTION if overlap_seconds is None else overlap_seconds
    t0 = time.perf_counter()
    bar = tqdm(total=len(pairs), unit="pair", desc="evaluating", disable=not progress)
    for where, refs in pairs:
        scores = evaluate_segment(model, refs, pairs.sample_rate, chunk_seconds=chunk, overlap_seconds=overlap,
                                  band_above_hz=band_above_hz, high_band=high_band)
        rows.add(where, scores, refs, pairs.sample_rate)
        bar.update(1)
    bar.close()
    return rows.result(skipped_silent=0, mode=PAIRS, chunk_seconds=chunk, overlap_seconds=overlap,
                       high_band=high_band, seed=seed,
                       level_db=level_db, silent_songs=pairs.silent_songs, short_songs=pairs.short_songs,
                       seconds=time.perf_counter() - t0)


def summarize(results: list[dict]) -> dict:
    """{n_active (str) | "2+": {"segments": count, metric: mean over segments}} for :data:`METRICS`, plus
    ``band_segments`` (segments whose high band qualifies) where the rows have high-band scores.

    SI-SNRi is reported only where it means something: the "1" row (one active stem: the mixture *is* the stem)
    has SI-SNR but no SI-SNRi (None); the "2+" row averages every segment with at least two active stems.
    High-band SI-SNRi is the mean over the qualifying segments only."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(str(r["n_active_refs"]), []).append(r)
    multi = [r for r in results if r["n_active_refs"] >= 2]
    if multi:
        groups[MULTI] = multi
    summary = {}
    for key, rows in groups.items():
        entry = {"segments": len(rows)}
        for metric in METRICS:
            values = [r[metric] for r in rows if r.get(metric) is not None]
            entry[metric] = float(np.mean(values)) if values and not (key == "1" and metric in IMPROVEMENTS) else None
        if any("band_qualifies" in r for r in rows):
            entry["band_segments"] = sum(bool(r.get("band_qualifies")) for r in rows)
        summary[key] = entry
    return summary


def _cell(value) -> str:
    return "-" if value is None else str(value) if isinstance(value, int) else f"{value:.2f}"


def _band_label(band_above_hz: float) -> str:
    return f">{band_above_hz / 1000:g}k"


def format_table(summary: dict, *, scored_at: str | None = None, band_above_hz: float | None = None) -> str:
    """A fixed-width text table of :func:`summarize` output: one row per number of active stems, then 2+; a
    first line "scored at <scored_at>" (the rate, e.g. "44100 Hz") when given; the high-band columns with
    ``band_above_hz``."""
    columns = [("1:1 SI-SNR", "one_to_one_sisnr"), ("1:1 SI-SNRi", "one_to_one_sisnri"), ("1:1 SDR", "one_to_one_sdr"),
               ("MixIT SI-SNR", "mixit_sisnr"), ("MixIT SI-SNRi", "mixit_sisnri"), ("overlap", "mask_overlap"),
               ("N_eff", "effective_mask_count")]
    if band_above_hz is not None:
        label = _band_label(band_above_hz)
        columns += [(f"{label} segs", "band_segments"), (f"{label} MixIT", "band_mixit_sisnri"),
                    (f"{label} 1:1", "band_one_to_one_sisnri")]
    keys = sorted((k for k in summary if k != MULTI), key=int) + ([MULTI] if MULTI in summary else [])
    lines = [] if scored_at is None else [f"scored at {scored_at}"]
    lines.append("  ".join(f"{h:>13}" for h in ("active", "segments", *(c[0] for c in columns))))
    for key in keys:
        e = summary[key]
        cells = [key, str(e["segments"])] + [_cell(e.get(m)) for _, m in columns]
        lines.append("  ".join(f"{c:>13}" for c in cells))
    return "\n".join(lines)


def format_comparison(rows: dict[str, dict], *, band_above_hz: float | None = None) -> str:
    """Markdown table, one row per method ({name: summary}): the 2+ row's scores and the 1-stem SI-SNR; with
    ``band_above_hz`` the high band's qualifying segments and MixIT-style / one-to-one SI-SNRi."""
    label = "" if band_above_hz is None else _band_label(band_above_hz)
    band = label and f" segments {label} | SI-SNRi MixIT {label} | SI-SNRi 1:1 {label} |"
    lines = ["| method | segments (2+ stems) | SI-SNRi 1:1 | SI-SNRi MixIT | SI-SNR 1:1 | SDR 1:1 | "
             "SI-SNR 1 stem |" + band, "|---|---|---|---|---|---|---|" + "---|" * (3 if band else 0)]
    for name, summary in rows.items():
        multi, one = summary.get(MULTI, {}), summary.get("1", {})
        line = (f"| {name} | {multi.get('segments', 0)} | {_cell(multi.get('one_to_one_sisnri'))} | "
                f"{_cell(multi.get('mixit_sisnri'))} | {_cell(multi.get('one_to_one_sisnr'))} | "
                f"{_cell(multi.get('one_to_one_sdr'))} | {_cell(one.get('one_to_one_sisnr'))} |")
        if band:
            line += (f" {_cell(multi.get('band_segments'))} | {_cell(multi.get('band_mixit_sisnri'))} | "
                     f"{_cell(multi.get('band_one_to_one_sisnri'))} |")
        lines.append(line)
    return "\n".join(lines)


def data_rate(songs) -> int:
    """The rate the songs were recorded at: the most common sample rate of their files (a song that is not read
    from files counts its own ``sample_rate``); ties go to the higher rate."""
    from trackformer.data.songs import FileSong

    rates = Counter(t.sample_rate for song in songs if isinstance(song, FileSong) for stem in song.stems
                    for t in stem.tracks)
    rates.update(song.sample_rate for song in songs if not isinstance(song, FileSong))
    if not rates:
        raise ValueError("no songs to take the data's sample rate from")
    return max(rates, key=lambda rate: (rates[rate], rate))


def open_songs(data: str, *, sample_rate: int, channels: int, stems: str = "auto", split: str | None = None,
               mixture_of_mixtures: bool = False) -> dict:
    """The songs ``trackformer evaluate`` scores, read at ``sample_rate`` / ``channels``.

    With stems (default): ``data`` in MoisesDB layout or a stems folder, references by ``stems`` (see
    :func:`run_evaluation`). ``mixture_of_mixtures``: songs without stems, each one reference: a music corpus
    (``trackformer data index-music``), the mixtures of a MoisesDB-layout folder, or else every audio file under
    ``data`` (:class:`~trackformer.data.corpus.AudioFolder`). ``split``: "all", or the "train" / "valid" / "test"
    part (a corpus's own split; None: "test" for a corpus, "all" otherwise). Returns {songs, skipped (count),
    split, layout}."""
    from trackformer.data.cli import open_dataset
    from trackformer.data.corpus import AudioFolder, MusicCorpus, is_corpus
    from trackformer.data.moisesdb import MUSDB_GROUPS, MoisesDB
    from trackformer.data.songs import SongCollection

    if not os.path.isdir(data):
        raise FileNotFoundError(f"data folder not found: {data}")
    if stems not in STEM_MODES:
        raise ValueError(f"stems must be one of {STEM_MODES}, got {stems!r}")
    corpus = mixture_of_mixtures and is_corpus(data)
    split = split or ("test" if corpus else "all")
    if split not in ("all", "train", "valid", "test"):
        raise ValueError(f"split must be 'all', 'train', 'valid' or 'test', got {split!r}")
    options = dict(sample_rate=sample_rate, channels=channels)
    if corpus:
        dataset = MusicCorpus(data, **options)
    elif mixture_of_mixtures:
        dataset = MoisesDB(data, max_stems=None, **options)
        if not dataset.songs and not dataset.skipped:  # not in MoisesDB layout
            dataset = AudioFolder(data, **options)
    else:
        dataset = open_dataset(data, **options)
        if stems != "as-is" and isinstance(dataset, MoisesDB):
            grouped = MoisesDB(data, stem_groups=MUSDB_GROUPS, **options)
            if stems == "auto":  # a song's own stems where it has at most 4, the MUSDB groups otherwise
                kept = {song.name for song in dataset.songs}
                merged = SongCollection()
                merged.songs = sorted(dataset.songs + [s for s in grouped.songs if s.name not in kept],
                                      key=lambda song: song.name)
                merged.skipped = grouped.skipped
                grouped = merged
            dataset = grouped
    if split == "test" and not corpus:
        raise ValueError(f"split 'test' is a music corpus's own split (--mixture-of-mixtures on a folder made by "
                         f"`trackformer data index-music`); {data} has 'all', 'train' and 'valid'")
    songs = dataset.songs if split == "all" else dataset.split(split)
    if not songs:
        raise ValueError(f"no usable songs in {data} (split {split!r}; {len(dataset.skipped)} skipped)")
    return dict(songs=songs, skipped=len(dataset.skipped), split=split, layout=type(dataset).__name__)


def open_scored_songs(data: str, *, score_rate: str | int = "data", model_rate: int, channels: int,
                      **kwargs) -> dict:
    """:func:`open_songs` (``kwargs``) read at the rate the scores are taken at: ``score_rate`` "data" (the rate
    of the data's files, :func:`data_rate`), "model" (``model_rate``) or a rate in Hz. Returns open_songs' dict
    plus ``sample_rate`` (that rate)."""
    if score_rate not in ("data", "model") and (isinstance(score_rate, bool) or not isinstance(score_rate, int)
                                               or score_rate <= 0):
        raise ValueError(f"score_rate must be 'data', 'model' or a rate in Hz, got {score_rate!r}")
    opened = open_songs(data, sample_rate=model_rate, channels=channels, **kwargs)  # headers only
    rate = data_rate(opened["songs"]) if score_rate == "data" else model_rate if score_rate == "model" else score_rate
    if rate != model_rate:
        opened = open_songs(data, sample_rate=rate, channels=channels, **kwargs)
    return {**opened, "sample_rate": rate}


def run_evaluation(checkpoint: str, data: str, *, segment_seconds: float = 10.0, n: int | None = None,
                   split: str | None = None, stems: str = "auto", out_dir: str = "outputs/evaluate", device="cpu",
                   whole_song: bool = False, baselines: tuple[str, ...] = BASELINES, chunk_seconds: float | None = None,
                   mixture_of_mixtures: bool = False, seed: int = 0, level_db: float = 0.0,
                   band_above_hz: float | None = None, score_rate: str | int = "data", high_band: str = "shares",
                   progress: bool = False) -> dict:
    """``trackformer evaluate``: loads the checkpoint, opens ``data`` (:func:`open_songs`), evaluates (windows of
    ``chunk_seconds``, default the checkpoint's training segment), writes ``out_dir/<data>-<mode>.json`` and then,
    when matplotlib imports, ``.png`` (:func:`result_name`: never overwriting).

    References (at most 4, as the MixIT-style search enumerates K^M assignments): ``stems="auto"`` takes a song's
    own stems where it has at most 4 and, for a MoisesDB song with more, sums them into the MUSDB groups vocals /
    drums (+ percussion) / bass / other; ``"musdb"`` groups every MoisesDB song; ``"as-is"`` never groups (songs
    with more than 4 stems are skipped). ``mixture_of_mixtures``: songs without stems, scored on
    :class:`MixturePairs` (``n`` pairs, ``seed``, ``level_db``). Scores are taken at ``score_rate``: "data" (the
    rate of the data's files, :func:`data_rate`), "model" (the model's rate, as before) or a rate in Hz; channels
    are the model's. ``band_above_hz`` adds the high-band scores; ``high_band`` is how the separation splits the
    band above the model's Nyquist (as ``trackformer separate --high-band``). Returns the result dict with ``json``,
    ``plot`` (None when skipped, ``plot_skipped`` then says why) and ``songs_skipped`` added."""
    from trackformer.plots import plot_evaluation, unavailable
    from trackformer.separate import load_separator

    if whole_song and mixture_of_mixtures:
        raise ValueError("--whole-song separates one song whole; a mixture of mixtures sums excerpts of two songs")
    if band_above_hz is not None and not band_above_hz > 0:
        raise ValueError(f"band_above_hz must be > 0 Hz, got {band_above_hz}")
    model, info = load_separator(checkpoint, device)
    model_rate = int(getattr(model, "sample_rate", info.get("sample_rate") or 44100))
    channels = model_channels(model) or info.get("channels") or 2
    opened = open_scored_songs(data, score_rate=score_rate, model_rate=model_rate, channels=channels, stems=stems,
                               split=split, mixture_of_mixtures=mixture_of_mixtures)
    songs, rate = opened["songs"], opened["sample_rate"]
    if band_above_hz is not None and not band_above_hz < rate / 2:
        raise ValueError(f"--band-above {band_above_hz:g} Hz is not below the Nyquist frequency of the scored rate "
                         f"{rate} Hz")
    chunk = chunk_seconds or info.get("segment_seconds") or segment_seconds
    common = dict(segment_seconds=segment_seconds, n=n, chunk_seconds=chunk, baselines=tuple(baselines),
                  band_above_hz=band_above_hz, high_band=high_band, progress=progress)
    if mixture_of_mixtures:
        result = evaluate_pairs(model, songs, seed=seed, level_db=level_db, **common)
    else:
        result = evaluate_songs(model, songs, whole_song=whole_song, **common)
    if not result["segments"]:
        what = "pair of audible excerpts" if mixture_of_mixtures else "segment with an audible stem"
        raise ValueError(f"no {what} of {segment_seconds} s in {data}: songs too short or silent; try a smaller "
                         "--segment")
    result.update(checkpoint=os.path.abspath(checkpoint), data=os.path.abspath(data), split=opened["split"],
                  layout=opened["layout"], stems=None if mixture_of_mixtures else stems,
                  segment_seconds=segment_seconds, sample_rate=rate, model_sample_rate=model_rate,
                  channels=channels, songs=len(songs), songs_skipped=opened["skipped"], model=info.get("name"),
                  step=info.get("step"))
    name = result_name(data, result["mode"], out_dir)
    result["json"] = os.path.join(out_dir, f"{name}.json")
    result["plot_skipped"] = unavailable()  # the picture is optional: results are written first either way
    result["plot"] = None if result["plot_skipped"] else os.path.join(out_dir, f"{name}.png")
    with open(result["json"], "w") as f:
        json.dump(result, f, indent=2)
    if result["plot"]:
        by_active: dict[int, dict[str, list]] = {}
        for r in (r for r in result["segments"] if r["n_active_refs"] >= 2):  # SI-SNRi means nothing with one
            group = by_active.setdefault(r["n_active_refs"], {"one_to_one_sisnri": [], "mixit_sisnri": []})
            group["one_to_one_sisnri"].append(r["one_to_one_sisnri"])
            group["mixit_sisnri"].append(r["mixit_sisnri"])
        plot_evaluation(by_active, result["plot"], title=f"{name}: {len(result['segments'])} segments of "
                        f"{segment_seconds:g} s at {rate} Hz")
    return result


def result_name(data: str, mode: str, out_dir: str) -> str:
    """``<data folder>-<mode>`` for the files of one evaluation, with a numeric suffix when that name is taken in
    ``out_dir`` (created), so no earlier result is overwritten. ``trackformer evaluate`` gives each model its
    own ``out_dir``."""
    base = f"{os.path.basename(os.path.normpath(data))}-{mode}"
    os.makedirs(out_dir, exist_ok=True)
    name, i = base, 1
    while os.path.exists(os.path.join(out_dir, f"{name}.json")):
        i += 1
        name = f"{base}-{i}"
    return name
