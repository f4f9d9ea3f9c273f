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
                   help="a GM .sf2/.sf3 path or timgm6mb | fluidr3 | fluidr3mono | csound | opl3 | musescore "
                        "(default: FluidR3 if installed, else TimGM6mb)")
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
                   help="a GM .sf2/.sf3 path, or timgm6mb | fluidr3 | fluidr3mono | csound | opl3 | musescore "
                        "(held out for test sets; default: TimGM6mb from pretty-midi)")
    p.add_argument("--split", choices=("train", "test"), default="train", help="seed namespace (default train)")
    p.add_argument("--seed", type=int, default=0, help="set seed (default 0); songs are named SPLIT-SEED-INDEX")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each song (default 30)")
    p.add_argument("--max-stems", type=int, default=6, help="2..6 stems per song (default 6)")
    p.add_argument("--effects", action="store_true",
                   help="per-stem effects a band's tracks have (amp distortion, EQ, compression, reverb, stereo "
                        "width) and mix-bus compression, seeded per song (default off: songs render as before)")
    p.add_argument("--sample-rate", type=int, default=44100, help="Hz (default 44100)")
    p.set_defaults(func=_render_songs)

    p = sub.add_parser("index-music", help="turn any folder of music files into a MixIT training corpus",
                       description="Index every audio file under FOLDER (WAV, FLAC, OGG, Opus, MP3, AIFF; m4a/AAC "
                                   "with PyAV) into OUT: OUT/index.json (each song's duration, source rate and "
                                   "channels, loudness, non-silent spans, train/valid/test split by a hash of its "
                                   "path: 80/10/10) and a decoded copy of each under OUT/audio/ for fast training "
                                   "reads. Re-running skips songs already indexed; files that fail to decode are "
                                   "listed, not fatal. Train on it with `data: corpus` and `root: OUT` (or "
                                   "`real_root: OUT` beside rendered stems).")
    p.add_argument("folder", help="folder of music files (searched recursively)")
    p.add_argument("out", help="corpus folder (created)")
    _corpus_options(p)
    p.set_defaults(func=_index_music)

    p = sub.add_parser("fetch-debian-music", help="fetch freely licensed game music from Debian packages and "
                                                  "index it as a MixIT corpus",
                       description="Download Debian's game-music packages with `apt-get download` (no install, "
                                   "no system change), unpack them with `dpkg -x` into CACHE, extract the music "
                                   "(also from .pk3 archives), write CACHE/manifest.json (each file's package, "
                                   "license from the package's copyright file, duration, split) and index it as "
                                   "a corpus (CACHE/corpus unless --corpus). Packages of rhythm-game songs with "
                                   "separate instrument tracks are reserved for evaluation and refused.")
    p.add_argument("cache", help="download cache folder (created)")
    p.add_argument("--packages", nargs="+", default=None, metavar="PKG",
                   help="packages to fetch (default: all of them, trackformer.data.debian.PACKAGES); the corpus "
                        "then holds these only")
    p.add_argument("--debs", default=None, metavar="DIR",
                   help="a folder of already downloaded .deb files to use instead of downloading")
    p.add_argument("--corpus", default=None, metavar="DIR", help="corpus folder (default CACHE/corpus)")
    _corpus_options(p)
    p.set_defaults(func=_fetch_debian_music)

    p = sub.add_parser("info", help="summarise a MoisesDB-layout folder, a stems folder or a music corpus")
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


def _corpus_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sample-rate", type=int, default=44100, help="Hz of the decoded copies (default 44100)")
    p.add_argument("--channels", type=int, default=2, choices=(1, 2), help="of the decoded copies (default 2)")
    p.add_argument("--sample-format", choices=("int16", "float32"), default="int16",
                   help="WAV sample format of the decoded copies (default int16)")
    p.add_argument("--silence-db", type=float, default=-60.0,
                   help="0.1 s windows quieter than this (dBFS) are silence, skipped by training (default -60)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _print_corpus(index: dict, out: str) -> None:
    from trackformer.data.corpus import corpus_summary

    s = corpus_summary(index)
    print(f"music corpus at {out}: {s['songs']} songs, {s['hours']:.2f} h ({s['nonsilent_hours']:.2f} h not "
          f"silent); train/valid/test songs {s['split_songs']['train']}/{s['split_songs']['valid']}/"
          f"{s['split_songs']['test']}; {s['skipped']} skipped")
    for item in index["skipped"]:
        print(f"  skipped {item['path']}: {item['reason']}")


def _index_music(args) -> int:
    from trackformer.data.corpus import index_music

    try:
        index = index_music(args.folder, args.out, sample_rate=args.sample_rate, channels=args.channels,
                            sample_format=args.sample_format, silence_db=args.silence_db,
                            progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as e:
        print(f"trackformer data index-music: {e}", file=sys.stderr)
        return 2
    _print_corpus(index, args.out)
    return 0 if index["songs"] else 1


def _fetch_debian_music(args) -> int:
    from trackformer.data.debian import DebianMusicError, fetch_debian_music

    try:
        manifest, index = fetch_debian_music(
            args.cache, packages=args.packages, debs=args.debs, corpus=args.corpus, sample_rate=args.sample_rate,
            channels=args.channels, sample_format=args.sample_format, silence_db=args.silence_db,
            progress=not args.no_progress)
    except DebianMusicError as e:
        print(f"trackformer data fetch-debian-music: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:
        print(f"trackformer data fetch-debian-music: {e}", file=sys.stderr)
        return 2
    for pkg, p in manifest["packages"].items():
        print(f"  {pkg}: {p['files']} files, {p['hours']:.2f} h, license {', '.join(p['licenses'])}")
    _print_corpus(index, manifest["corpus"])
    return 0 if index["songs"] else 1


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
        sample_rate=args.sample_rate, seconds=args.seconds, max_stems=args.max_stems,
        effects=args.effects),
        lambda s: f"rendered {s['rendered']} songs")


def open_dataset(root: str, **kwargs):
    """A MusicCorpus if ``root`` holds a corpus index.json, MoisesDB if it is in that layout (a moisesdb_v0.1
    folder or song folders with data.json), else a StemsFolder."""
    from trackformer.data.corpus import MusicCorpus, is_corpus

    if is_corpus(root):
        return MusicCorpus(root, **{k: v for k, v in kwargs.items() if k != "max_stems"})
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
