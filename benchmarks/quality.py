"""Separation quality of trained checkpoints beside the non-learned baselines, on held-out music.

    python benchmarks/quality.py --test outputs/test44k --real outputs/debmusic \
        --checkpoint performer=runs/a/checkpoints/last.pt --checkpoint convtasnet=runs/b/checkpoints/last.pt \
        --segment 10 --band-above 8000 --out outputs/quality [--whole-song] [--pairs 50]

Every checkpoint and the baselines (the mixture itself, a split into 8 log-spaced frequency bands, the oracle
ideal ratio mask; the last two on the first model's STFT window) are scored on the same segments of each set,
with :mod:`trackformer.evaluate` — windows of each checkpoint's training segment, cross-faded, as
``trackformer separate`` does:

* ``--test FOLDER``: songs with stems (MoisesDB layout, at most 4 stems, e.g. ``trackformer data render-songs
  --split test --soundfont musescore``: seeds and a soundfont no training set uses); SI-SNRi is averaged over
  segments with >= 2 active stems only; segments with one active stem report SI-SNR (FUSS convention).
* ``--real FOLDER``: real music without stems, as a mixture of mixtures (:func:`trackformer.evaluate.evaluate_pairs`):
  excerpts of two different songs summed, each song one reference; a music corpus's test split
  (``trackformer data index-music``), or every audio file of a folder. ``--pairs`` (default: each song in one
  pair), ``--seed``, ``--level-db`` (default 0: the levels as they are).

Scores are taken at the data's rate (``--score-rate model``: the model's, as before); ``--band-above HZ`` adds
MixIT-style / one-to-one SI-SNRi on the part above HZ (segments where two references carry >= 10 % of it).

Writes ``OUT/quality.json`` (``entries[name].summary.overall`` = the 2+ row of the first set, as
benchmarks/readme_table.py reads it) and ``OUT/quality.md`` (one table per set, naming the scored rate). Not a
test: the numbers depend on the training.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import card_name, write_json  # noqa: E402

from trackformer.evaluate import (  # noqa: E402
    BASELINES,
    MULTI,
    evaluate_pairs,
    evaluate_songs,
    format_comparison,
    open_scored_songs,
)
from trackformer.registry import load_model  # noqa: E402

CHANNELS = 2  # songs are read in stereo; a mono model separates each channel (trackformer.separate)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--test", action="append", default=[], metavar="FOLDER",
                   help="held-out songs with stems, MoisesDB layout (repeatable)")
    p.add_argument("--real", action="append", default=[], metavar="FOLDER",
                   help="held-out real music without stems, scored as a mixture of mixtures: a music corpus (its "
                        "test split) or a folder of audio files (repeatable)")
    p.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH",
                   help="a trained checkpoint to score, named (repeatable)")
    p.add_argument("--segment", type=float, default=10.0, help="scored segment seconds (default 10)")
    p.add_argument("--n", type=int, default=None, help="at most this many segments per --test set")
    p.add_argument("--pairs", type=int, default=None,
                   help="pairs per --real set (default: each song in one pair)")
    p.add_argument("--seed", type=int, default=0, help="--real pairs and excerpts (default 0)")
    p.add_argument("--level-db", type=float, default=0.0,
                   help="--real: relative level of the two songs drawn in ±L dB (default 0: as they are)")
    p.add_argument("--band-above", type=float, default=None, metavar="HZ",
                   help="also score SI-SNRi above HZ (e.g. 8000)")
    p.add_argument("--score-rate", default="data", choices=("data", "model"),
                   help="score at the data's rate (default) or the model's")
    p.add_argument("--whole-song", action="store_true",
                   help="also score whole-song separation (separate's path) on the --test sets")
    p.add_argument("--out", default="outputs/quality", help="output folder (JSON, markdown)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if not args.test and not args.real:
        p.error("give at least one --test or --real folder")
    return args


def score_set(models: dict, folder: str, real: bool, args) -> tuple[dict, str]:
    """Every model (and, once, the baselines) on one set; returns ({label: entry}, markdown section)."""
    model_rate = next(iter(models.values()))[0].sample_rate
    opened = open_scored_songs(folder, score_rate=args.score_rate, model_rate=model_rate, channels=CHANNELS,
                               stems="as-is", mixture_of_mixtures=real)
    songs, rate = opened["songs"], opened["sample_rate"]
    rows, test = {}, {}
    modes = [False, True] if args.whole_song and not real else [False]
    for name, (model, info) in models.items():
        for whole in modes:
            common = dict(segment_seconds=args.segment, chunk_seconds=info.get("segment_seconds"),
                          baselines=BASELINES if not rows else (), band_above_hz=args.band_above, progress=True)
            if real:
                r = evaluate_pairs(model, songs, n=args.pairs, seed=args.seed, level_db=args.level_db, **common)
            else:
                r = evaluate_songs(model, songs, n=args.n, whole_song=whole, **common)
            label = f"{name} ({'whole song' if whole else 'per segment'})" if len(modes) > 1 else name
            rows[label] = r["summary"]
            test[label] = dict(summary=r["summary"], step=info["step"], chunk_seconds=r["chunk_seconds"],
                               params=sum(p.numel() for p in model.parameters()), seconds=r["seconds"])
            for base, entry in r["baselines"].items():
                rows[base] = entry["summary"]
                test[base] = dict(summary=entry["summary"])
    what = (f"mixture of mixtures, split {opened['split']!r}, seed {args.seed}, "
            f"{f'relative level ±{args.level_db:g} dB' if args.level_db else 'levels as they are'}"
            if real else "songs with stems")
    heading = (f"### {os.path.basename(os.path.normpath(folder))} ({what}): {args.segment:g} s segments, scored at "
               f"{rate} Hz ({len(songs)} songs)")
    return dict(sets=test, sample_rate=rate, real=real, split=opened["split"]), \
        f"{heading}\n\n{format_comparison(rows, band_above_hz=args.band_above)}\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    models = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--checkpoint {item!r}: expected NAME=PATH")
        models[name] = load_model(path, map_location=device)
    result = dict(card=card_name(device), segment=args.segment, score_rate=args.score_rate,
                  band_above_hz=args.band_above, seed=args.seed, level_db=args.level_db, tests={}, entries={})
    tables = []
    for folder, real in [(f, False) for f in args.test] + [(f, True) for f in args.real]:
        entry, table = score_set(models, folder, real, args)
        result["tests"][folder] = entry
        tables.append(table)
    # the first set's rows in the shape benchmarks/readme_table.py reads
    for name, entry in next(iter(result["tests"].values()))["sets"].items():
        result["entries"][name.split(" (")[0]] = dict(summary={"overall": entry["summary"].get(MULTI, {})})
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, "quality.json"), result)
    text = "\n".join(tables)
    with open(os.path.join(args.out, "quality.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
