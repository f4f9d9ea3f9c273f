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
"""

import json
import os
import time

import numpy as np
import torch

from trackformer.baselines.fixed import band_split, ideal_ratio_mask
from trackformer.metrics import SILENT_RMS, separation_scores
from trackformer.separate import DEFAULT_OVERLAP_FRACTION, SILENT_INPUT_PEAK, model_channels, separate_waveform

STEM_MODES = ("auto", "musdb", "as-is")
BASELINES = ("mixture", "bands", "irm")
METRICS = ("one_to_one_sisnr", "one_to_one_sisnri", "one_to_one_sdr", "mixit_sisnr", "mixit_sisnri",
           "mixture_sisnr", "mask_overlap", "effective_mask_count")
IMPROVEMENTS = ("one_to_one_sisnri", "mixit_sisnri")  # meaningless with one active reference (FUSS convention)
MULTI = "2+"  # the summary row of every segment with at least two active references


def evaluate_segment(model: torch.nn.Module, stems: torch.Tensor, sample_rate: int, *,
                     chunk_seconds: float | None = None, overlap_seconds: float | None = None) -> dict:
    """Scores of ``model`` on one segment: stems (K, C, T) at ``sample_rate`` Hz, mixture = their sum.

    The segment is separated as ``trackformer separate`` does it: windows of ``chunk_seconds`` (the model's
    training segment; default the whole segment in one window) overlapping by ``overlap_seconds`` (default half a
    window, as ``separate``), cross-faded. Returns the :func:`separation_scores` dict plus mask_overlap,
    effective_mask_count (of the model's own masks where it has them, see ``mask_source``) and n_silent_outputs
    (below −40 dB of the mixture)."""
    mixture = stems.sum(0)
    chunk = stems.shape[-1] / sample_rate if chunk_seconds is None else chunk_seconds
    overlap = chunk * DEFAULT_OVERLAP_FRACTION if overlap_seconds is None else overlap_seconds
    sources, info = separate_waveform(model, mixture, sample_rate, chunk_seconds=chunk, overlap_seconds=overlap,
                                      analysis=True)
    scores = separation_scores(sources, stems, mixture)
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


def evaluate_songs(model: torch.nn.Module, songs, *, segment_seconds: float = 10.0, n: int | None = None,
                   chunk_seconds: float | None = None, overlap_seconds: float | None = None,
                   whole_song: bool = False, baselines: tuple[str, ...] = (), n_fft: int | None = None,
                   hop: int | None = None, progress: bool = False) -> dict:
    """Evaluates ``model`` on ``songs`` (trackformer.data Song objects) until ``n`` segments with an audible
    stem are scored (all when None).

    Per-segment mode (default): each segment is separated on its own (:func:`evaluate_segment`, windows of
    ``chunk_seconds``). ``whole_song=True``: each song is separated once, whole, the way ``trackformer separate``
    does it (windows, cross-fades, output order kept across windows), and the outputs are cut into the same
    segments for scoring (no mask metrics then). ``baselines`` (names from :data:`BASELINES`) are scored on the
    same segments (their STFT: ``n_fft`` / ``hop``, default the model's).

    Returns {segments: [per-segment dicts with song, start_seconds and the scores], skipped_silent,
    summary: :func:`summarize`, baselines: {name: {segments, summary}}, mode, seconds (wall time)}."""
    from tqdm import tqdm

    if not segment_seconds > 0:
        raise ValueError(f"segment_seconds must be > 0, got {segment_seconds}")
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 segments, got {n}")
    for name in baselines:
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; choose from {list(BASELINES)}")
    config = getattr(model, "config", None)
    n_fft = n_fft or getattr(config, "n_fft", 1024)
    hop = hop or getattr(config, "hop", 256)
    chunk = segment_seconds if chunk_seconds is None else chunk_seconds
    overlap = chunk * DEFAULT_OVERLAP_FRACTION if overlap_seconds is None else overlap_seconds
    t0 = time.perf_counter()
    results, skipped = [], 0
    base_rows: dict[str, list[dict]] = {name: [] for name in baselines}
    total = sum(1 for _ in segments_of(songs, segment_seconds))
    bar = tqdm(total=total if n is None else min(n, total), unit="segment", desc="evaluating", disable=not progress)
    song_sources = {}  # whole-song mode: the current song's separated outputs
    for song, start, frames in segments_of(songs, segment_seconds):
        if n is not None and len(results) >= n:
            break
        stems = song.load_stems(start, frames)
        active = stems.pow(2).mean(dim=(1, 2)).sqrt() >= SILENT_RMS
        if not bool(active.any()) or stems.sum(0).abs().amax() < SILENT_INPUT_PEAK:  # nothing to score
            skipped += 1
            continue
        if whole_song:
            if song.name not in song_sources:
                song_sources = {song.name: separate_waveform(model, song.load_mixture(), song.sample_rate,
                                                             chunk_seconds=chunk, overlap_seconds=overlap)[0]}
            scores = separation_scores(song_sources[song.name][..., start:start + frames], stems, stems.sum(0))
        else:
            scores = evaluate_segment(model, stems, song.sample_rate, chunk_seconds=chunk, overlap_seconds=overlap)
        where = dict(song=song.name, start_seconds=start / song.sample_rate)
        results.append({**where, **scores})
        for name in baselines:
            est = baseline_sources(name, stems, song.sample_rate, n_fft=n_fft, hop=hop)
            base_rows[name].append({**where, **separation_scores(est, stems, stems.sum(0))})
        bar.update(1)
    bar.close()
    return dict(segments=results, skipped_silent=skipped, summary=summarize(results),
                baselines={name: dict(segments=rows, summary=summarize(rows)) for name, rows in base_rows.items()},
                mode="whole-song" if whole_song else "segments", chunk_seconds=chunk, overlap_seconds=overlap,
                seconds=time.perf_counter() - t0)


def summarize(results: list[dict]) -> dict:
    """{n_active (str) | "2+": {"segments": count, metric: mean over segments}} for :data:`METRICS`.

    SI-SNRi is reported only where it means something: the "1" row (one active stem: the mixture *is* the stem)
    has SI-SNR but no SI-SNRi (None); the "2+" row averages every segment with at least two active stems."""
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
        summary[key] = entry
    return summary


def _cell(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(summary: dict) -> str:
    """A fixed-width text table of :func:`summarize` output: one row per number of active stems, then 2+."""
    header = ("active", "segments", "1:1 SI-SNR", "1:1 SI-SNRi", "1:1 SDR", "MixIT SI-SNR", "MixIT SI-SNRi",
              "overlap", "N_eff")
    keys = sorted((k for k in summary if k != MULTI), key=int) + ([MULTI] if MULTI in summary else [])
    lines = ["  ".join(f"{h:>13}" for h in header)]
    for key in keys:
        e = summary[key]
        cells = [key, str(e["segments"])] + [_cell(e[m]) for m in (
            "one_to_one_sisnr", "one_to_one_sisnri", "one_to_one_sdr", "mixit_sisnr", "mixit_sisnri",
            "mask_overlap", "effective_mask_count")]
        lines.append("  ".join(f"{c:>13}" for c in cells))
    return "\n".join(lines)


def format_comparison(rows: dict[str, dict]) -> str:
    """Markdown table, one row per method ({name: summary}): the 2+ row's scores and the 1-stem SI-SNR."""
    lines = ["| method | segments (2+ stems) | SI-SNRi 1:1 | SI-SNRi MixIT | SI-SNR 1:1 | SDR 1:1 | "
             "SI-SNR 1 stem |", "|---|---|---|---|---|---|---|"]
    for name, summary in rows.items():
        multi, one = summary.get(MULTI, {}), summary.get("1", {})
        lines.append(f"| {name} | {multi.get('segments', 0)} | {_cell(multi.get('one_to_one_sisnri'))} | "
                     f"{_cell(multi.get('mixit_sisnri'))} | {_cell(multi.get('one_to_one_sisnr'))} | "
                     f"{_cell(multi.get('one_to_one_sdr'))} | {_cell(one.get('one_to_one_sisnr'))} |")
    return "\n".join(lines)


def run_evaluation(checkpoint: str, data: str, *, segment_seconds: float = 10.0, n: int | None = None,
                   split: str = "all", stems: str = "auto", out_dir: str = "outputs/evaluate", device="cpu",
                   whole_song: bool = False, baselines: tuple[str, ...] = BASELINES, chunk_seconds: float | None = None,
                   progress: bool = False) -> dict:
    """``trackformer evaluate``: loads the checkpoint, indexes ``data`` (MoisesDB layout or stems folder) at the
    model's rate and channel count, evaluates (windows of ``chunk_seconds``, default the checkpoint's training
    segment), writes ``out_dir/<data>-<mode>.json`` and ``.png`` (:func:`result_name`: never overwriting).

    References (at most 4, as the MixIT-style search enumerates K^M assignments): ``stems="auto"`` takes a song's
    own stems where it has at most 4 and, for a MoisesDB song with more, sums them into the MUSDB groups vocals /
    drums (+ percussion) / bass / other; ``"musdb"`` groups every MoisesDB song; ``"as-is"`` never groups (songs
    with more than 4 stems are skipped). Returns the result dict with ``json`` and ``plot``
    paths and ``songs_skipped`` added."""
    from trackformer.data.cli import open_dataset
    from trackformer.data.moisesdb import MUSDB_GROUPS, MoisesDB
    from trackformer.data.songs import SongCollection
    from trackformer.plots import plot_evaluation
    from trackformer.separate import load_separator

    if not os.path.isdir(data):
        raise FileNotFoundError(f"data folder not found: {data}")
    if split not in ("all", "train", "valid"):
        raise ValueError(f"split must be 'all', 'train' or 'valid', got {split!r}")
    if stems not in STEM_MODES:
        raise ValueError(f"stems must be one of {STEM_MODES}, got {stems!r}")
    model, info = load_separator(checkpoint, device)
    rate = int(getattr(model, "sample_rate", info.get("sample_rate") or 44100))
    options = dict(sample_rate=rate, channels=model_channels(model) or info.get("channels") or 2)
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
    songs = dataset.songs if split == "all" else dataset.split(split)
    if not songs:
        raise ValueError(f"no usable songs in {data} (split {split!r}; {len(dataset.skipped)} skipped)")
    chunk = chunk_seconds or info.get("segment_seconds") or segment_seconds
    result = evaluate_songs(model, songs, segment_seconds=segment_seconds, n=n, chunk_seconds=chunk,
                            whole_song=whole_song, baselines=tuple(baselines), progress=progress)
    if not result["segments"]:
        raise ValueError(f"no segment of {segment_seconds} s with an audible stem in {data}: songs too short "
                         "or silent; try a smaller --segment")
    result.update(checkpoint=os.path.abspath(checkpoint), data=os.path.abspath(data), split=split, stems=stems,
                  segment_seconds=segment_seconds, sample_rate=rate, songs=len(songs),
                  songs_skipped=len(dataset.skipped), model=info.get("name"), step=info.get("step"))
    name = result_name(data, result["mode"], out_dir)
    result["json"] = os.path.join(out_dir, f"{name}.json")
    result["plot"] = os.path.join(out_dir, f"{name}.png")
    by_active: dict[int, dict[str, list]] = {}
    for r in (r for r in result["segments"] if r["n_active_refs"] >= 2):  # SI-SNRi means nothing with one
        group = by_active.setdefault(r["n_active_refs"], {"one_to_one_sisnri": [], "mixit_sisnri": []})
        group["one_to_one_sisnri"].append(r["one_to_one_sisnri"])
        group["mixit_sisnri"].append(r["mixit_sisnri"])
    plot_evaluation(by_active, result["plot"], title=f"{name}: {len(result['segments'])} segments of "
                    f"{segment_seconds:g} s")
    with open(result["json"], "w") as f:
        json.dump(result, f, indent=2)
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
