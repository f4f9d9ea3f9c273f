"""``trackformer data ...``: render chorales, write synthetic songs, summarise a dataset folder.

The CLI owner registers these with ``trackformer.data.cli.add_parser(subparsers)``; every sub-subcommand sets
``func(args) -> exit code`` (0 ok, 1 nothing usable, 2 bad input).
"""

import argparse
import json
import os
import sys

import numpy as np

from trackformer.data.moisesdb import SUBDIR, MoisesDB, write_song
from trackformer.data.render import render_chorales
from trackformer.data.stems_folder import StemsFolder
from trackformer.data.synth import SyntheticMusic


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``data`` (with render-chorales, info, synth) on an argparse sub-parsers object."""
    data = subparsers.add_parser("data", help="prepare and inspect datasets",
                                 description="Prepare and inspect datasets (MoisesDB layout or stems folders).")
    sub = data.add_subparsers(dest="data_command", required=True)

    p = sub.add_parser("render-chorales", help="render the music21 Bach chorales to a MoisesDB-layout folder")
    p.add_argument("out", help="output folder (created; finished songs are kept)")
    p.add_argument("--n", type=int, default=None, help="number of chorales (default: all four-part ones)")
    p.add_argument("--sample-rate", type=int, default=44100, help="Hz (default 44100)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    p.add_argument("--seed", type=int, default=0, help="tempo/key/instrument draws (default 0)")
    p.add_argument("--soundfont", default=None,
                   help="a GM .sf2/.sf3 path or timgm6mb | fluidr3 | musescore (default: FluidR3 if installed, "
                        "else TimGM6mb)")
    p.add_argument("--backend", choices=("tinysoundfont", "fluidsynth"), default="tinysoundfont",
                   help="synthesiser (default tinysoundfont: a pip package; fluidsynth: the system program)")
    p.set_defaults(func=_render)

    p = sub.add_parser("render-songs", help="render procedurally generated multi-instrument songs (drums, bass, "
                                            "chords, lead, ...) to a MoisesDB-layout folder",
                       description="Procedurally generated songs (trackformer.data.songgen) rendered with "
                                   "TinySoundFont: no system package needed. --split test uses seeds no training "
                                   "set uses; render it with a soundfont no training set uses.")
    p.add_argument("out", help="output folder (created; finished songs are kept)")
    p.add_argument("--n", type=int, required=True, help="number of songs")
    p.add_argument("--soundfont", default=None,
                   help="a GM .sf2/.sf3 path, or timgm6mb | fluidr3 | musescore (default: TimGM6mb from pretty-midi)")
    p.add_argument("--split", choices=("train", "test"), default="train", help="seed namespace (default train)")
    p.add_argument("--seed", type=int, default=0, help="set seed (default 0); songs are named SPLIT-SEED-INDEX")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each song (default 30)")
    p.add_argument("--max-stems", type=int, default=6, help="2..6 stems per song (default 6)")
    p.add_argument("--sample-rate", type=int, default=44100, help="Hz (default 44100)")
    p.set_defaults(func=_render_songs)

    p = sub.add_parser("info", help="summarise a MoisesDB-layout folder or a stems folder")
    p.add_argument("root")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_info)

    p = sub.add_parser("synth", help="write synthetic 4-stem songs in the MoisesDB layout")
    p.add_argument("out")
    p.add_argument("--n", type=int, required=True, help="number of songs")
    p.add_argument("--seconds", type=float, required=True, help="length of each song")
    p.add_argument("--sample-rate", type=int, default=44100, help="Hz (default 44100)")
    p.add_argument("--channels", type=int, default=2, choices=(1, 2))
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_synth)
    return data


def _run_render(command: str, render, describe) -> int:
    """Runs ``render()`` (a render summary with rendered / existing / skipped), prints ``describe(summary)`` and
    the skipped pieces; exit code 2 for bad input or a missing tool, 1 when nothing is usable, else 0."""
    try:
        s = render()
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        print(f"trackformer data {command}: {e}", file=sys.stderr)
        return 2
    print(f"{describe(s)} in {s['wall_seconds']:.1f} s; {s['existing']} already there; {len(s['skipped'])} skipped")
    for name, reason in s["skipped"]:
        print(f"  skipped {name}: {reason}")
    return 0 if s["rendered"] + s["existing"] else 1


def _render(args) -> int:
    return _run_render("render-chorales", lambda: render_chorales(
        args.out, n=args.n, sample_rate=args.sample_rate, seed=args.seed, workers=args.workers,
        soundfont=args.soundfont, backend=args.backend),
        lambda s: f"rendered {s['rendered']} songs ({s['audio_seconds'] / 60:.1f} min of 4-stem audio)")


def _render_songs(args) -> int:
    from trackformer.data.render import find_soundfont
    from trackformer.data.songgen import render_songs

    return _run_render("render-songs", lambda: render_songs(
        args.out, n=args.n, soundfont=find_soundfont(args.soundfont), split=args.split, seed=args.seed,
        sample_rate=args.sample_rate, seconds=args.seconds, max_stems=args.max_stems),
        lambda s: f"rendered {s['rendered']} songs")


def open_dataset(root: str, **kwargs):
    """MoisesDB if ``root`` is in that layout (a moisesdb_v0.1 folder or song folders with data.json), else a
    StemsFolder."""
    moises = os.path.isdir(os.path.join(root, SUBDIR)) or any(
        os.path.isfile(os.path.join(root, e, "data.json")) for e in os.listdir(root))
    return (MoisesDB if moises else StemsFolder)(root, **kwargs)


def _info(args) -> int:
    if not os.path.isdir(args.root):
        print(f"trackformer data info: not a directory: {args.root}", file=sys.stderr)
        return 2
    ds = open_dataset(args.root, max_stems=None)
    summary = {"layout": type(ds).__name__, "root": ds.root, **ds.summary(),
               "skipped_files": [{"path": p, "reason": r} for p, r in ds.skipped]}
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        total = f"{summary['hours']:.2f} h" if summary["hours"] >= 1 else f"{summary['hours'] * 60:.1f} min"
        print(f"{summary['layout']} at {ds.root}: {summary['songs']} songs, {total} "
              f"({summary['seconds_min']:.1f}–{summary['seconds_max']:.1f} s per song)")
        print(f"  stems per song: {summary['stems_per_song']}")
        print(f"  stem names: {summary['stem_names']}")
        for p, r in ds.skipped:
            print(f"  skipped {p}: {r}")
    return 0 if ds.songs else 1


def _synth(args) -> int:
    try:
        music = SyntheticMusic(args.n, seconds=args.seconds, sample_rate=args.sample_rate, channels=args.channels,
                               seed=args.seed)
    except ValueError as e:
        print(f"trackformer data synth: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    written = 0
    for song in music:
        if os.path.isfile(os.path.join(args.out, song.name, "data.json")):
            continue
        stems = song.load_stems().numpy()
        peak = float(np.abs(stems.sum(0)).max())
        stems *= min(1.0, 0.99 / max(peak, 1e-9))  # 16-bit files: keep the mixture (and so every stem) unclipped
        plan = song.plan
        write_song(args.out, song.name, dict(zip(song.stem_names, stems)), args.sample_rate, artist="synthetic",
                   song=song.name, genre="synthetic",
                   extra={"synth": {"seed": args.seed, "bpm": plan["bpm"], "key": plan["key"],
                                    "minor": plan["minor"]}})
        written += 1
    print(f"wrote {written} synthetic songs to {args.out} ({len(music) - written} already there)")
    return 0
