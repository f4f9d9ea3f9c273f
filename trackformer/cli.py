"""The ``trackformer`` command line (also ``python -m trackformer``).

    trackformer separate SONG... [-o DIR] [--checkpoint CKPT] [--chunk-seconds S] [--overlap S] [--device D]
    trackformer evaluate CKPT DATA [--segment 10] [--n N] [--split all|train|valid] [--stems auto|musdb|as-is]
                         [-o DIR] [--device D]
    trackformer train ... | pretrain ...     (trackformer.train.cli)
    trackformer data ...                    (trackformer.data.cli)
    trackformer bench [--device D] [--quick] (benchmarks/run_all.py of a source checkout)
    trackformer demo [...]                  (trackformer.demo)

Errors a person can act on (missing or corrupt file, silent or NaN audio, a checkpoint of another model or
version, CUDA out of memory) print one line on stderr and exit with status 1; ``--debug`` shows the traceback.
"""

import argparse
import os
import subprocess
import sys

from trackformer.data import cli as data_cli
from trackformer.train import cli as train_cli
from trackformer.train.distributed import resolve_device

DEFAULT_CHECKPOINT = os.path.join("outputs", "demo", "model.pt")  # what `trackformer demo` trains


def _cmd_separate(args) -> int:
    from trackformer.data.audio import audio_info
    from trackformer.separate import DEFAULT_OVERLAP_FRACTION, load_separator, output_dir_for, separate_file

    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}" + (
            "" if args.checkpoint else " (pass --checkpoint, or train one with `trackformer demo` or "
                                       "`trackformer train`)"))
    for song in args.songs:  # fail on a typo before a long run
        audio_info(song)
    folders = [output_dir_for(song, args.output) for song in args.songs]
    clash = sorted({f for f in folders if folders.count(f) > 1})
    if clash:
        raise ValueError(f"several inputs would write to the same folder {clash[0]}; separate them in two runs "
                         "with different -o")
    device = resolve_device(args.device)
    model, info = load_separator(checkpoint, device)
    chunk = args.chunk_seconds if args.chunk_seconds is not None else info.get("segment_seconds") or 10.0
    overlap = args.overlap if args.overlap is not None else chunk * DEFAULT_OVERLAP_FRACTION
    for song in args.songs:
        result = separate_file(model, song, args.output, chunk_seconds=chunk, overlap_seconds=overlap,
                               progress=not args.quiet)
        silent = [i + 1 for i in result["silent_outputs"]]
        print(f"{song}: {len(result['sources'])} sources in {os.path.dirname(result['picture'])} "
              f"(effective mask count {result['effective_mask_count']:.2f}, mask overlap "
              f"{result['mask_overlap']:.2f}; silent outputs {silent or 'none'})")
    return 0


def _cmd_evaluate(args) -> int:
    from trackformer.evaluate import format_table, run_evaluation

    result = run_evaluation(args.checkpoint, args.data, segment_seconds=args.segment, n=args.n, split=args.split,
                            stems=args.stems, out_dir=args.output, device=resolve_device(args.device),
                            progress=not args.quiet)
    print(format_table(result["summary"]))
    print(f"{len(result['segments'])} segments of {args.segment:g} s from {result['songs']} songs "
          f"({result['skipped_silent']} silent segments skipped; {result['songs_skipped']} songs unusable) "
          f"in {result['seconds']:.1f} s")
    print(f"results: {result['json']}\nplot:    {result['plot']}")
    return 0


def benchmarks_script() -> str:
    """Path of benchmarks/run_all.py in the source checkout this package was imported from."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(root, "benchmarks", "run_all.py")


def _cmd_bench(args) -> int:
    script = benchmarks_script()
    if not os.path.isfile(script):
        raise FileNotFoundError(f"{script} not found: `trackformer bench` needs a source checkout of trackformer "
                                "(git clone, then `make install`); an installed wheel has no benchmarks")
    cmd = [sys.executable, script, "--device", str(resolve_device(args.device))] + (["--quick"] if args.quick else [])
    for option in ("out_dir", "budget_s", "suites"):
        if getattr(args, option) is not None:
            cmd += ["--" + option.replace("_", "-"), str(getattr(args, option))]
    return subprocess.call(cmd, cwd=os.path.dirname(os.path.dirname(script)))


def _cmd_demo(args) -> int:
    from trackformer.demo import run_demo

    run_demo(out_dir=args.output, minutes=args.minutes, device=resolve_device(args.device), n_songs=args.songs)
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="compute device: auto (CUDA when available), cpu, cuda, cuda:N (default auto)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback on errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trackformer", description="Unsupervised music source separation (Performer + MixIT).",
        epilog="Run `trackformer COMMAND --help` for the options of a command.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("separate", help="separate songs into 8 sources with a trained model",
                       description="Separate audio files (any length, rate, mono or stereo) into the model's "
                                   "outputs: DIR/<song>/source_1.wav ... source_8.wav at the input's rate and "
                                   "channels, masks.png and separation.json. The stems sum to the input.")
    p.add_argument("songs", nargs="+", metavar="SONG", help="audio files (anything soundfile reads)")
    p.add_argument("-o", "--output", default="separated", help="output folder (default ./separated)")
    p.add_argument("--checkpoint", default=None, help=f"trained checkpoint (default {DEFAULT_CHECKPOINT})")
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help="window length in seconds (default: the segment length the model was trained on)")
    p.add_argument("--overlap", type=float, default=None,
                   help="overlap of consecutive windows in seconds (default: half the window)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_common(p)
    p.set_defaults(func=_cmd_separate)

    p = sub.add_parser("evaluate", help="SI-SNR(i) and mask metrics of a checkpoint on songs with stems",
                       description="Evaluate a checkpoint on a MoisesDB-layout folder (or a stems folder): "
                                   "one-to-one and MixIT-style SI-SNR / SI-SNRi by number of active stems, mask "
                                   "overlap, effective mask count. Prints a table, writes JSON and a plot.")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("data", metavar="DATA", help="MoisesDB-layout folder or stems folder")
    p.add_argument("--segment", type=float, default=10.0, help="segment length in seconds (default 10)")
    p.add_argument("--n", type=int, default=None, help="stop after N scored segments (default: all)")
    p.add_argument("--split", default="all", choices=("all", "train", "valid"),
                   help="songs to use: all, or the train/valid part of the trainer's split (default all)")
    p.add_argument("--stems", default="auto", choices=("auto", "musdb", "as-is"),
                   help="references: auto = a song's own stems if at most 4, else (MoisesDB) summed into "
                        "vocals/drums/bass/other (default); musdb = always grouped; as-is = never (songs with "
                        "more than 4 stems are skipped)")
    p.add_argument("-o", "--output", default=os.path.join("outputs", "evaluate"),
                   help="folder for the JSON and the plot (default outputs/evaluate)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_common(p)
    p.set_defaults(func=_cmd_evaluate)

    train_cli.add_parser(sub)
    data_cli.add_parser(sub)

    p = sub.add_parser("bench", help="run the benchmarks (source checkout only)",
                       description="Run benchmarks/run_all.py of the source checkout in a subprocess.")
    p.add_argument("--quick", action="store_true", help="small shapes only")
    _add_common(p)
    p.add_argument("--out-dir", default=None, help="results folder (run_all.py's default: outputs/bench)")
    p.add_argument("--budget-s", type=float, default=None, help="wall-clock budget for all suites")
    p.add_argument("--suites", default=None, help="comma-separated suites (default all)")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("demo", help="render chorales, train a small model, separate a held-out mix (CPU ≲ 10 min)",
                       description="End to end on a fresh machine: render a small Bach-chorale set (synthetic "
                                   "music without fluidsynth), train a small Performer with MixIT for a fixed "
                                   "time, separate a held-out chorale and print its SI-SNRi against the true "
                                   "stems.")
    p.add_argument("-o", "--output", default=os.path.join("outputs", "demo"), help="default outputs/demo")
    p.add_argument("--minutes", type=float, default=6.0, help="training time budget (default 6)")
    p.add_argument("--songs", type=int, default=16, help="chorales to render (default 16)")
    _add_common(p)
    p.set_defaults(func=_cmd_demo)
    return parser


def error_message(err: BaseException, args) -> str:
    """One line a person can act on."""
    import torch

    hint = {"separate": " a smaller --chunk-seconds", "evaluate": " a smaller --segment"}.get(
        getattr(args, "command", ""), " smaller sizes")
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return f"CUDA out of memory; try{hint} or --device cpu"
    if isinstance(err, MemoryError) or (isinstance(err, RuntimeError) and "can't allocate memory" in str(err)):
        return f"out of memory on the CPU; try{hint}"
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, (ValueError, TypeError, FileNotFoundError, OSError)) or type(err).__name__ in (
            "CheckpointError", "AudioFileError"):
        return text
    return f"{type(err).__name__}: {text} (rerun with --debug for the traceback)"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("trackformer: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if getattr(args, "debug", False):
            raise
        print(f"trackformer {args.command}: error: {error_message(err, args)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
