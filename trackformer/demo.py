"""``trackformer demo`` (``make demo``): the whole pipeline on a fresh CPU machine in about ten minutes.

Stages, each a function:
  1. :func:`prepare_data`  render generated multi-instrument songs (drums, bass, chords, lead, ...; 2-6 stems,
     TinySoundFont + the TimGM6mb soundfont of the pretty-midi wheel, 16 kHz) into ``out/songs``; without
     tinysoundfont or a soundfont, fall back to synthetic 4-stem music and say so;
  2. :func:`train_model`   MixIT training with the recipe of the shipped model (preset "default") for a fixed
     wall-time budget;
  3. :func:`separate_heldout` separate one mixture of a song the trainer never trained on (its validation part)
     and score the 8 outputs against the song's true stems (SI-SNRi, one-to-one and MixIT-style);
  4. :func:`report`        print where the stems, the picture and the JSON are.
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


def heldout_song(data: dict, *, sample_rate: int = SAMPLE_RATE):
    """A song the trainer did not train on: the last of the validation part of the split it uses (the
    default ``SongCollection.split``), or for synthetic data a song of an unused seed."""
    from trackformer.data import MoisesDB, SyntheticMusic

    if data["data"] == "synthetic":  # the trainer trains on seed 0 and validates on seed 1
        return SyntheticMusic(1, seconds=12.0, sample_rate=sample_rate, channels=1, seed=2).songs[0]
    collection = MoisesDB(data["root"], sample_rate=sample_rate, channels=1)
    valid = collection.split("valid")
    if not valid:
        _say("no song fell into the validation part; the demo's 'held-out' song was seen in training")
    return (valid or collection.songs)[-1]


def separate_heldout(checkpoint: str, song, out_dir: str, *, device: torch.device, seconds: float = 20.0) -> dict:
    """Writes the first ``seconds`` of ``song``'s mixture to ``out/heldout_mix.wav``, separates it with the CLI's
    code path and scores the outputs against the true stems. Returns the separation JSON plus ``scores``."""
    from trackformer.data import read_audio, write_audio
    from trackformer.metrics import separation_scores
    from trackformer.separate import DEFAULT_OVERLAP_FRACTION, load_separator, separate_file

    frames = min(song.num_frames, round(seconds * song.sample_rate))
    stems = song.load_stems(0, frames)
    mixture = stems.sum(0)
    mix_path = os.path.join(out_dir, "heldout_mix.wav")
    write_audio(mix_path, mixture.numpy(), song.sample_rate, subtype="FLOAT")
    model, info = load_separator(checkpoint, device)
    result = separate_file(model, mix_path, os.path.join(out_dir, "separated"),
                           chunk_seconds=info["segment_seconds"],
                           overlap_seconds=info["segment_seconds"] * DEFAULT_OVERLAP_FRACTION)
    sources = torch.stack([torch.from_numpy(read_audio(p)) for p in result["sources"]])
    result["scores"] = separation_scores(sources, stems, mixture)
    result["song"] = song.name
    result["validation"] = dict(info.get("metrics") or {}, segment_seconds=info["segment_seconds"])
    with open(os.path.join(out_dir, "demo.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def report(result: dict, out_dir: str, seconds: float) -> None:
    """Prints the held-out scores and where the files are."""
    s = result["scores"]
    _say(f"held-out song {result['song']}: {s['n_active_refs']} active stems")
    _say(f"  SI-SNRi one-to-one (best output per stem):   {s['one_to_one_sisnri']:+.2f} dB "
         f"(SI-SNR {s['one_to_one_sisnr']:+.2f} dB; the mixture itself {s['mixture_sisnr']:+.2f} dB)")
    _say(f"  SI-SNRi MixIT-style (outputs summed per stem): {s['mixit_sisnri']:+.2f} dB")
    _say(f"  effective mask count {result['effective_mask_count']:.2f} of {len(result['sources'])}, "
         f"mask overlap {result['mask_overlap']:.2f}")
    v = result["validation"]
    if "song_one_to_one_sisnri" in v:  # the trainer's last validation: held-out songs, one segment at a time
        _say(f"validation on held-out songs in {v['segment_seconds']:g} s segments (each segment matched on its "
             f"own): SI-SNRi one-to-one {v['song_one_to_one_sisnri']:+.2f} dB, MixIT-style "
             f"{v['song_mixit_sisnri']:+.2f} dB")
    _say(f"stems:   {os.path.dirname(result['sources'][0])}/source_1.wav ... source_{len(result['sources'])}.wav")
    _say(f"picture: {result['picture']}")
    _say(f"scores:  {os.path.join(out_dir, 'demo.json')}")
    model = os.path.join(out_dir, "model.pt")
    _say(f"model:   {model} (try `trackformer separate SONG.wav --checkpoint {model}`)")
    _say(f"done in {seconds / 60:.1f} min")


def run_demo(out_dir: str = os.path.join("outputs", "demo"), *, minutes: float = 6.0, device=None,
             n_songs: int = 16) -> dict:
    """All four stages; returns the held-out result dict."""
    t0 = time.perf_counter()
    if not minutes > 0:
        raise ValueError(f"--minutes must be > 0, got {minutes}")
    if n_songs < 4:
        raise ValueError(f"--songs must be >= 4 (MixIT needs songs to mix and one to hold out), got {n_songs}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device is None else device
    os.makedirs(out_dir, exist_ok=True)
    data = prepare_data(out_dir, n_songs)
    checkpoint = train_model(out_dir, data, minutes=minutes, device=device)
    result = separate_heldout(checkpoint, heldout_song(data), out_dir, device=device)
    report(result, out_dir, time.perf_counter() - t0)
    return result
