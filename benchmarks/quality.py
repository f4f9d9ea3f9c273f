"""Separation quality of trained checkpoints beside the non-learned baselines, on held-out music.

    python benchmarks/quality.py --test outputs/test16k --checkpoint performer=runs/a/checkpoints/last.pt \
        --checkpoint convtasnet=runs/b/checkpoints/last.pt --segment 10 --out outputs/quality [--whole-song]

Every checkpoint and the baselines (the mixture itself, a split into 8 log-spaced frequency bands, the oracle
ideal ratio mask; the last two on the first model's STFT) are scored on the same segments of each ``--test``
folder (MoisesDB layout, e.g. ``trackformer data render-songs --split test --soundfont musescore``: seeds and a
soundfont no training set uses), with :func:`trackformer.evaluate.evaluate_songs` — windows of each checkpoint's
training segment, cross-faded, as ``trackformer separate`` does. SI-SNRi is averaged over segments with >= 2
active stems only; segments with one active stem report SI-SNR (FUSS convention).

Writes ``OUT/quality.json`` (``entries[name].summary.overall`` = the 2+ row, as benchmarks/readme_table.py
reads it) and ``OUT/quality.md`` (one table per test set). Not a test: the numbers depend on the training.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import card_name, write_json  # noqa: E402

from trackformer.data import MoisesDB  # noqa: E402
from trackformer.evaluate import BASELINES, MULTI, evaluate_songs, format_comparison  # noqa: E402
from trackformer.registry import load_model  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--test", action="append", required=True, metavar="FOLDER", help="held-out set (repeatable)")
    p.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH",
                   help="a trained checkpoint to score, named (repeatable)")
    p.add_argument("--segment", type=float, default=10.0, help="scored segment seconds (default 10)")
    p.add_argument("--n", type=int, default=None, help="at most this many segments per test set")
    p.add_argument("--whole-song", action="store_true", help="also score whole-song separation (separate's path)")
    p.add_argument("--out", default="outputs/quality", help="output folder (JSON, markdown)")
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    models = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--checkpoint {item!r}: expected NAME=PATH")
        models[name] = load_model(path, map_location=device)
    rate = next(iter(models.values()))[0].sample_rate
    result = dict(card=card_name(device), segment=args.segment, sample_rate=rate, tests={}, entries={})
    tables = []
    for folder in args.test:
        songs = MoisesDB(folder, sample_rate=rate, channels=2, max_stems=4).songs
        if not songs:
            raise SystemExit(f"{folder}: no songs with at most 4 stems")
        rows, test = {}, {}
        modes = [False, True] if args.whole_song else [False]
        for name, (model, info) in models.items():
            for whole in modes:
                r = evaluate_songs(model, songs, segment_seconds=args.segment, n=args.n,
                                   chunk_seconds=info.get("segment_seconds"), whole_song=whole,
                                   baselines=BASELINES if not rows else (), progress=True)
                label = f"{name} ({'whole song' if whole else 'per segment'})" if args.whole_song else name
                rows[label] = r["summary"]
                test[label] = dict(summary=r["summary"], step=info["step"], chunk_seconds=r["chunk_seconds"],
                                   params=sum(p.numel() for p in model.parameters()), seconds=r["seconds"])
                for base, entry in r["baselines"].items():
                    rows[base] = entry["summary"]
                    test[base] = dict(summary=entry["summary"])
        result["tests"][folder] = test
        tables.append(f"### {os.path.basename(os.path.normpath(folder))}: {args.segment:g} s segments, {rate} Hz "
                      f"({len(songs)} songs)\n\n{format_comparison(rows)}\n")
    # the first test set's rows in the shape benchmarks/readme_table.py reads
    for name, entry in next(iter(result["tests"].values())).items():
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
