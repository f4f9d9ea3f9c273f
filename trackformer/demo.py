"""``trackformer demo`` (``make demo``): the whole pipeline on a fresh CPU machine in about ten minutes.

Stages, each a function:
  1. :func:`prepare_data`  render generated multi-instrument songs (drums, bass, chords, lead, ...; 2-6 stems,
     TinySoundFont + the TimGM6mb soundfont of the pretty-midi wheel, 16 kHz) into ``out/songs``; without
     tinysoundfont or a soundfont, fall back to synthetic 4-stem music and say so;
  2. :func:`heldout_song`  a song no model trained on: one of the generator's test split (its own seeds), or for
     synthetic data a song of an unused seed;
  3. :func:`separate_heldout` + :func:`baseline_scores` first, the SHIPPED model (``trackformer.pretrained``)
     separates the held-out song, scored (SI-SNRi, one-to-one and MixIT-style) beside the mixture itself, the
     8-band split and the oracle ideal ratio mask (:mod:`trackformer.evaluate`);
  4. :func:`train_model`   MixIT training with the shipped model's recipe (preset "default") for a fixed
     wall-time budget (the progress bar counts toward the time limit);
  5. the trained model separates the same song; :func:`report` prints its scores beside the shipped model's.
Everything is written under ``out`` (default ``outputs/demo``, gitignored); the checkpoint is copied to
``out/model.pt`` (``trackformer separate SONG --checkpoint out/model.pt``).
"""

import json
import os
import shutil
import sys
import time

import torch

SAMPLE_RATE = 16000  # the tiny-cpu preset's rate


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def prepare_data(out_dir: str, n_songs: int, *, sample_rate: int = SAMPLE_RATE) -> dict:
    """Training data for the demo: {"data": "moisesdb", "root": folder} of generated songs, or
    {"data": "synthetic"} (the trainer then draws synthetic songs itself) when tinysoundfont or a soundfont is
    missing."""
    from trackformer.data import find_soundfont
    from trackformer.data.songgen import render_songs

    root = os.path.join(out_dir, "songs")
    t0 = time.perf_counter()
    try:
        summary = render_songs(root, n=n_songs, soundfont=find_soundfont("timgm6mb"), sample_rate=sample_rate,
                               seconds=30.0, progress=sys.stderr.isatty())
    except (RuntimeError, FileNotFoundError) as err:  # tinysoundfont or the soundfont missing
        _say(f"cannot render songs, so the demo uses synthetic music instead ({err})")
        return {"data": "synthetic"}
    _say(f"{summary['rendered']} generated songs rendered, {summary['existing']} already there, into {root} "
         f"({time.perf_counter() - t0:.0f} s)")
    if summary["rendered"] + summary["existing"] < 4:
        _say("too few songs could be rendered; using synthetic music instead")
        return {"data": "synthetic"}
    return {"data": "moisesdb", "root": root}


def train_model(out_dir: str, data: dict, *, minutes: float, device: torch.device) -> str:
    """Trains the shipped model's recipe (preset "default") with MixIT for ``minutes`` of wall time; returns
    ``out/model.pt``."""
    from trackformer.train import fit, preset

    base = preset("tiny-cpu" if data["data"] == "synthetic" else "default")
    config = base.replace(run_dir=os.path.join(out_dir, "run"), max_minutes=minutes, device=str(device), **data)
    _say(f"training a {config.model_config['n_layers']}-layer Performer with MixIT on {device} for "
         f"{minutes:g} min ({config.data} data, {config.segment_seconds:g} s segments at {config.sample_rate} Hz)")
    last = fit(config)
    target = os.path.join(out_dir, "model.pt")
    shutil.copyfile(last, target)
    return target


def heldout_song(data: dict, out_dir: str, *, sample_rate: int = SAMPLE_RATE):
    """A song neither the shipped model nor the demo's trains on: song 0 of the generator's test split (seeds no
    training set uses), rendered into ``out/heldout``; for synthetic data a song of an unused seed."""
    from trackformer.data import MoisesDB, SyntheticMusic, find_soundfont
    from trackformer.data.songgen import render_songs

    if data["data"] == "synthetic":  # the trainer trains on seed 0 and validates on seed 1
        return SyntheticMusic(1, seconds=12.0, sample_rate=sample_rate, channels=1, seed=2).songs[0]
    root = os.path.join(out_dir, "heldout")
    render_songs(root, n=1, soundfont=find_soundfont("timgm6mb"), split="test", sample_rate=sample_rate,
                 seconds=30.0, progress=False)
    return MoisesDB(root, sample_rate=sample_rate, channels=1).songs[0]


def heldout_mixture(song, out_dir: str, *, seconds: float = 20.0):
    """The first ``seconds`` of ``song``: its stems (K, C, T) and their mixture, written to
    ``out/heldout_mix.wav`` (the file every model separates). Returns (path, stems)."""
    from trackformer.data import write_audio

    frames = min(song.num_frames, round(seconds * song.sample_rate))
    stems = song.load_stems(0, frames)
    path = os.path.join(out_dir, "heldout_mix.wav")
    write_audio(path, stems.sum(0).numpy(), song.sample_rate, subtype="FLOAT")
    return path, stems


def separate_heldout(checkpoint: str, mix_path: str, stems: torch.Tensor, out_dir: str, *,
                     device: torch.device, baselines: bool = False) -> dict:
    """Separates ``mix_path`` with ``checkpoint`` the way ``trackformer separate`` does (its windows, stems and
    separation.json into ``out_dir``) and scores the outputs against ``stems`` (K, C, T). Returns the separation
    JSON plus ``scores`` (:func:`trackformer.evaluate.score_sources`), ``validation`` (the checkpoint's last
    validation metrics) and, with ``baselines``, :func:`baseline_scores` with this model's STFT."""
    from trackformer.checkpoint_io import load_separator
    from trackformer.data import read_audio
    from trackformer.evaluate import score_sources
    from trackformer.separate import resolve_window, separate_file

    model, info = load_separator(checkpoint, device)
    chunk, overlap = resolve_window(info)
    result = separate_file(model, mix_path, out_dir, chunk_seconds=chunk, overlap_seconds=overlap)
    sources = torch.stack([torch.from_numpy(read_audio(p)) for p in result["sources"]])
    result["scores"] = score_sources(sources, stems, result["sample_rate"])
    result["validation"] = dict(info.get("metrics") or {}, segment_seconds=info["segment_seconds"])
    if baselines:
        result["baselines"] = baseline_scores(stems, result["sample_rate"], model)
    return result


def baseline_scores(stems: torch.Tensor, sample_rate: int, model: torch.nn.Module) -> dict:
    """{name: scores} of the non-learned baselines (the mixture itself, 8 log-spaced bands, the oracle ideal
    ratio mask; :func:`trackformer.evaluate.baseline_sources`) on the mixture of ``stems`` (K, C, T), with the
    STFT of ``model`` (:func:`trackformer.evaluate.baseline_stft`)."""
    from trackformer.evaluate import BASELINES, baseline_sources, baseline_stft, score_sources

    n_fft, hop = baseline_stft(model, sample_rate)
    return {name: score_sources(baseline_sources(name, stems, sample_rate, n_fft=n_fft, hop=hop), stems,
                                sample_rate) for name in BASELINES}


ROW_LABELS = {"mixture": "the mixture itself", "bands": "8-band split", "irm": "oracle IRM (needs the stems)"}


def format_scores(rows: dict) -> list[str]:
    """Lines of a table: one row per {label: scores} with SI-SNRi one-to-one and MixIT-style (dB)."""
    width = max(len(label) for label in rows)
    lines = [f"  {'':<{width}}  one-to-one  MixIT-style   (SI-SNRi, dB)"]
    for label, s in rows.items():
        lines.append(f"  {label:<{width}}  {s['one_to_one_sisnri']:+10.2f}  {s['mixit_sisnri']:+11.2f}")
    return lines


def report(result: dict, out_dir: str, seconds: float) -> None:
    """Prints the held-out scores of the trained model beside the shipped model's and where the files are."""
    s = result["trained"]["scores"]
    _say(f"held-out song {result['song']}: {s['n_active_refs']} active stems")
    rows = {} if result.get("shipped") is None else {"shipped model": result["shipped"]["scores"]}
    rows[f"trained here ({result['minutes']:g} min)"] = s
    for line in format_scores(rows):
        _say(line)
    _say(f"  (SI-SNR of the mixture itself {s['mixture_sisnr']:+.2f} dB; one-to-one = the best output per stem, "
         "MixIT-style = outputs summed per stem)")
    trained = result["trained"]
    if trained["effective_mask_count"] is not None:
        _say(f"  trained model: effective mask count {trained['effective_mask_count']:.2f} of "
             f"{len(trained['sources'])}, mask overlap {trained['mask_overlap']:.2f}")
    v = trained["validation"]
    if "song_one_to_one_sisnri" in v:  # the trainer's last validation: held-out songs, one segment at a time
        _say(f"validation on held-out songs in {v['segment_seconds']:g} s segments (each segment matched on its "
             f"own): SI-SNRi one-to-one {v['song_one_to_one_sisnri']:+.2f} dB, MixIT-style "
             f"{v['song_mixit_sisnri']:+.2f} dB")
    _say(f"stems:   {os.path.dirname(trained['sources'][0])}/source_1.wav ... "
         f"source_{len(trained['sources'])}.wav")
    _say(f"picture: {trained['picture']}" if trained["picture"] else f"picture: skipped, {trained['picture_skipped']}")
    _say(f"scores:  {os.path.join(out_dir, 'demo.json')}")
    model = os.path.join(out_dir, "model.pt")
    _say(f"model:   {model} (try `trackformer separate SONG.wav --checkpoint {model}`)")
    _say(f"done in {seconds / 60:.1f} min")


def shipped_first(mix_path: str, stems: torch.Tensor, sample_rate: int, out_dir: str, *,
                  device: torch.device) -> dict | None:
    """The shipped model's separation of the held-out mixture, printed beside the baselines (None, said in one
    line, when this install ships no model)."""
    from trackformer import pretrained

    try:
        checkpoint = pretrained.checkpoint_path(pretrained.DEFAULT)
    except (ValueError, FileNotFoundError) as err:
        _say(f"no shipped model to show first ({err})")
        return None
    shipped = separate_heldout(checkpoint, mix_path, stems, os.path.join(out_dir, "separated", "shipped"),
                               device=device, baselines=True)
    _say(f"the shipped model ({pretrained.model_label(pretrained.DEFAULT)}) on the held-out song "
         f"({stems.shape[0]} stems, {stems.shape[-1] / sample_rate:.0f} s):")
    rows = {"shipped model": shipped["scores"],
            **{ROW_LABELS[k]: v for k, v in shipped["baselines"].items()}}
    for line in format_scores(rows):
        _say(line)
    return shipped


def run_demo(out_dir: str = os.path.join("outputs", "demo"), *, minutes: float = 6.0, device=None,
             n_songs: int = 16) -> dict:
    """All stages; returns {"song", "minutes", "shipped" (None without a shipped model), "trained"}, also
    written to ``out/demo.json``."""
    t0 = time.perf_counter()
    if not minutes > 0:
        raise ValueError(f"--minutes must be > 0, got {minutes}")
    if n_songs < 4:
        raise ValueError(f"--songs must be >= 4 (MixIT needs songs to mix and one to hold out), got {n_songs}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device is None else device
    os.makedirs(out_dir, exist_ok=True)
    data = prepare_data(out_dir, n_songs)
    song = heldout_song(data, out_dir)
    mix_path, stems = heldout_mixture(song, out_dir)
    result = dict(song=song.name, minutes=minutes,
                  shipped=shipped_first(mix_path, stems, song.sample_rate, out_dir, device=device))
    checkpoint = train_model(out_dir, data, minutes=minutes, device=device)
    result["trained"] = separate_heldout(checkpoint, mix_path, stems, os.path.join(out_dir, "separated", "trained"),
                                         device=device)
    with open(os.path.join(out_dir, "demo.json"), "w") as f:
        json.dump(result, f, indent=2)
    report(result, out_dir, time.perf_counter() - t0)
    return result
