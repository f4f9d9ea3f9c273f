"""Evaluation of a trained separator on songs with ground-truth stems (MoisesDB layout or a stems folder).

Each song is cut into consecutive, non-overlapping segments of ``segment_seconds`` (a last, shorter piece is
dropped); segments whose references are all silent are skipped and counted. Per segment: the model's M outputs
(via :func:`trackformer.separate.separate_waveform`), :func:`trackformer.metrics.separation_scores` (one-to-one
and MixIT-style SI-SNR / SI-SNRi, silent stems excluded) and the mask metrics (the model's own masks, or masks
derived from the stems for a model without them). The summary groups segments by their number of active stems.
"""

import json
import os
import time

import numpy as np
import torch

from trackformer.metrics import SILENT_RMS, separation_scores
from trackformer.separate import SILENT_INPUT_PEAK, model_channels, separate_waveform

STEM_MODES = ("auto", "musdb", "as-is")
METRICS = ("one_to_one_sisnr", "one_to_one_sisnri", "mixit_sisnr", "mixit_sisnri", "mixture_sisnr",
           "mask_overlap", "effective_mask_count")


def evaluate_segment(model: torch.nn.Module, stems: torch.Tensor, sample_rate: int) -> dict:
    """Scores of ``model`` on one segment: stems (K, C, T) at ``sample_rate`` Hz, mixture = their sum.

    The segment is separated in one window. Returns the :func:`separation_scores` dict plus mask_overlap,
    effective_mask_count (of the model's own masks where it has them, see ``mask_source``) and
    n_silent_outputs (below −40 dB of the mixture)."""
    mixture = stems.sum(0)
    seconds = stems.shape[-1] / sample_rate
    sources, info = separate_waveform(model, mixture, sample_rate, chunk_seconds=seconds,
                                      overlap_seconds=seconds / 4, analysis=True)
    scores = separation_scores(sources, stems, mixture)
    analysis = info["analysis"]
    scores.update(mask_overlap=analysis["mask_overlap"], effective_mask_count=analysis["effective_mask_count"],
                  mask_source=analysis["mask_source"], n_silent_outputs=len(info["silent_outputs"]))
    return scores


def segments_of(songs, segment_seconds: float):
    """Yields (song, start frame, frames) for the consecutive full segments of each song, in order."""
    for song in songs:
        frames = round(segment_seconds * song.sample_rate)
        for start in range(0, song.num_frames - frames + 1, frames):
            yield song, start, frames


def evaluate_songs(model: torch.nn.Module, songs, *, segment_seconds: float = 10.0, n: int | None = None,
                   progress: bool = False) -> dict:
    """Evaluates ``model`` on ``songs`` (trackformer.data Song objects at the model's rate) until ``n``
    segments with an audible stem are scored (all when None); returns {segments: [per-segment dicts with song,
    start_seconds and the :func:`evaluate_segment` scores], skipped_silent, summary: :func:`summarize`,
    seconds (wall time)}."""
    from tqdm import tqdm

    if not segment_seconds > 0:
        raise ValueError(f"segment_seconds must be > 0, got {segment_seconds}")
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 segments, got {n}")
    t0 = time.perf_counter()
    results, skipped = [], 0
    total = sum(1 for _ in segments_of(songs, segment_seconds))
    bar = tqdm(total=total if n is None else min(n, total), unit="segment", desc="evaluating", disable=not progress)
    for song, start, frames in segments_of(songs, segment_seconds):
        if n is not None and len(results) >= n:
            break
        stems = song.load_stems(start, frames)
        active = stems.pow(2).mean(dim=(1, 2)).sqrt() >= SILENT_RMS
        if not bool(active.any()) or stems.sum(0).abs().amax() < SILENT_INPUT_PEAK:  # nothing to score
            skipped += 1
            continue
        scores = evaluate_segment(model, stems, song.sample_rate)
        results.append(dict(song=song.name, start_seconds=start / song.sample_rate, **scores))
        bar.update(1)
    bar.close()
    return dict(segments=results, skipped_silent=skipped, summary=summarize(results),
                seconds=time.perf_counter() - t0)


def summarize(results: list[dict]) -> dict:
    """{"all" | n_active (str): {"segments": count, metric: mean over segments}} for :data:`METRICS`."""
    groups: dict[str, list[dict]] = {"all": results}
    for r in results:
        groups.setdefault(str(r["n_active_refs"]), []).append(r)
    summary = {}
    for key, rows in groups.items():
        entry = {"segments": len(rows)}
        for metric in METRICS:
            values = [r[metric] for r in rows if r.get(metric) is not None]
            entry[metric] = float(np.mean(values)) if values else None
        summary[key] = entry
    return summary


def format_table(summary: dict) -> str:
    """A fixed-width text table of :func:`summarize` output: one row per number of active stems, then all."""
    header = ("active", "segments", "1:1 SI-SNR", "1:1 SI-SNRi", "MixIT SI-SNR", "MixIT SI-SNRi", "overlap",
              "N_eff")
    keys = sorted((k for k in summary if k != "all"), key=int) + ["all"]
    lines = ["  ".join(f"{h:>13}" for h in header)]
    for key in keys:
        e = summary[key]
        cells = [key, str(e["segments"])] + [
            "-" if e[m] is None else f"{e[m]:.2f}" for m in
            ("one_to_one_sisnr", "one_to_one_sisnri", "mixit_sisnr", "mixit_sisnri", "mask_overlap",
             "effective_mask_count")]
        lines.append("  ".join(f"{c:>13}" for c in cells))
    return "\n".join(lines)


def run_evaluation(checkpoint: str, data: str, *, segment_seconds: float = 10.0, n: int | None = None,
                   split: str = "all", stems: str = "auto", out_dir: str = "outputs/evaluate", device="cpu",
                   progress: bool = False) -> dict:
    """``trackformer evaluate``: loads the checkpoint, indexes ``data`` (MoisesDB layout or stems folder) at the
    model's rate and channel count, evaluates, writes ``out_dir/<checkpoint name>.json`` and ``.png``.

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
    result = evaluate_songs(model, songs, segment_seconds=segment_seconds, n=n, progress=progress)
    if not result["segments"]:
        raise ValueError(f"no segment of {segment_seconds} s with an audible stem in {data}: songs too short "
                         "or silent; try a smaller --segment")
    result.update(checkpoint=os.path.abspath(checkpoint), data=os.path.abspath(data), split=split, stems=stems,
                  segment_seconds=segment_seconds, sample_rate=rate, songs=len(songs),
                  songs_skipped=len(dataset.skipped), model=info.get("name"), step=info.get("step"))
    name = os.path.splitext(os.path.basename(checkpoint))[0]
    os.makedirs(out_dir, exist_ok=True)
    result["json"] = os.path.join(out_dir, f"{name}.json")
    result["plot"] = os.path.join(out_dir, f"{name}.png")
    by_active: dict[int, dict[str, list]] = {}
    for r in result["segments"]:
        group = by_active.setdefault(r["n_active_refs"], {"one_to_one_sisnri": [], "mixit_sisnri": []})
        group["one_to_one_sisnri"].append(r["one_to_one_sisnri"])
        group["mixit_sisnri"].append(r["mixit_sisnri"])
    plot_evaluation(by_active, result["plot"], title=f"{name}: {len(result['segments'])} segments of "
                    f"{segment_seconds:g} s")
    with open(result["json"], "w") as f:
        json.dump(result, f, indent=2)
    return result
