"""The ``trackformer`` command line (also ``python -m trackformer``).

    trackformer separate SONG... [-o DIR] [--checkpoint NAME|CKPT] [--chunk-seconds S] [--overlap F]
                         [--int24 | --float32] [--flac | --mp3] [--filename TEMPLATE] [--no-plot]
                         [--high-band shares|even] [--device D]
    trackformer evaluate [CKPT] DATA [--checkpoint NAME|CKPT] [--segment 10] [--n N]
                         [--split all|train|valid|test] [--stems auto|musdb|as-is] [--mixture-of-mixtures
                         [--seed S] [--level-db L]] [--band-above HZ] [--score-rate data|model|HZ]
                         [--high-band shares|even] [-o DIR] [--device D]
    trackformer export CKPT OUT             (slim inference checkpoint, trackformer.pretrained.export)
    trackformer train ... | pretrain ...     (trackformer.train.cli)
    trackformer data ...                    (trackformer.data.cli)
    trackformer bench [--device D] [--quick] (benchmarks/run_all.py of a source checkout)
    trackformer demo [...]                  (trackformer.demo)

Errors a person can act on (missing or corrupt file, silent or NaN audio, a checkpoint of another model or
version, CUDA out of memory) print one line on stderr and exit with status 1; ``--debug`` shows the traceback.

Imports are lazy: torch, scipy and the data stack load only when a command runs, so ``trackformer --help`` and
the parsers stay fast; ``data``'s parser (whose module imports the data stack) is built only when ``data`` is
the command.
"""

import argparse
import json
import os
import subprocess
import sys

from trackformer.train import cli as train_cli

DATA_HELP = "prepare and inspect datasets"  # `data`'s one-line help, shown without importing trackformer.data
SAMPLE_FORMATS = {"int24": "24-bit integer", "float32": "32-bit float"}  # besides the default 16-bit integer


def _cmd_separate(args) -> int:
    from trackformer import pretrained
    from trackformer.checkpoint_io import load_separator, resolve_device
    from trackformer.data.audio import audio_info, output_subtype
    from trackformer.separate import DEFAULT_FILENAME, resolve_window, separate_file, stem_paths

    checkpoint = pretrained.checkpoint_path(args.checkpoint)
    filename = args.filename or DEFAULT_FILENAME
    ext = "flac" if args.flac else "mp3" if args.mp3 else "wav"
    sample_format = "int24" if args.int24 else "float32" if args.float32 else "int16"
    try:
        output_subtype(ext, sample_format)
    except ValueError as err:
        raise ValueError(f"--{ext} with --{sample_format}: {err}") from None
    out_dir = os.path.join(args.output, pretrained.model_label(args.checkpoint))
    for song in args.songs:  # fail on a typo before a long run
        audio_info(song)
    paths = [p for song in args.songs for p in stem_paths(song, out_dir, 2, filename=filename, ext=ext)]
    clash = sorted({p for p in paths if paths.count(p) > 1})
    if clash:
        raise ValueError(f"several inputs would write to {clash[0]}; put {{track}} in --filename or separate them "
                         "in two runs with different -o")
    model, info = load_separator(checkpoint, resolve_device(args.device))
    chunk, overlap = resolve_window(info, args.chunk_seconds, args.overlap, names=("--chunk-seconds", "--overlap"))
    picture_note = None
    for song in args.songs:
        result = separate_file(model, song, out_dir, chunk_seconds=chunk, overlap_seconds=overlap,
                               filename=filename, ext=ext, sample_format=sample_format, plot=not args.no_plot,
                               progress=not args.quiet, high_band=args.high_band)
        if result["picture_skipped"] and picture_note is None:  # said once, not once per song
            picture_note = result["picture_skipped"]
            print(f"masks.png skipped: {picture_note} (--no-plot skips it quietly)", file=sys.stderr)
        silent = [i + 1 for i in result["silent_outputs"]]
        clipped = (f"; {result['clipped_samples']} samples clipped to ±1, use --float32 to keep them"
                   if result["clipped_samples"] else "")
        masks = ("mask statistics skipped with --no-plot" if result["effective_mask_count"] is None else
                 f"effective mask count {result['effective_mask_count']:.2f}, mask overlap "
                 f"{result['mask_overlap']:.2f}")
        print(f"{song}: {len(result['sources'])} sources in {os.path.dirname(result['sources'][0])} ({masks}; "
              f"silent outputs {silent or 'none'}{clipped})")
    return 0


def evaluation_dir(out_root: str, checkpoint: str, label: str) -> str:
    """``out_root/<label>`` for the evaluation of ``checkpoint``, or ``<label>-2``, ``-3``, ... when that folder
    holds the results of another checkpoint (recorded in its ``checkpoint.json``), so one run's results never
    overwrite another's; re-evaluating the same checkpoint reuses its folder."""
    source = os.path.abspath(checkpoint)
    n = 1
    while True:
        folder = os.path.join(out_root, label if n == 1 else f"{label}-{n}")
        record = os.path.join(folder, "checkpoint.json")
        if not os.path.exists(record):
            os.makedirs(folder, exist_ok=True)
            with open(record, "w") as f:
                json.dump({"checkpoint": source}, f)
            return folder
        with open(record) as f:
            if json.load(f).get("checkpoint") == source:
                return folder
        n += 1


def _cmd_evaluate(args) -> int:
    from trackformer import pretrained
    from trackformer.checkpoint_io import resolve_device
    from trackformer.evaluate import BASELINES, MULTI, PAIRS, format_comparison, format_table, run_evaluation

    if len(args.paths) == 2 and args.checkpoint is not None:
        raise ValueError("give the checkpoint once: either `evaluate CKPT DATA` or `evaluate DATA --checkpoint CKPT`")
    if len(args.paths) > 2:
        raise ValueError(f"evaluate takes [CKPT] DATA, got {len(args.paths)} paths: {' '.join(args.paths)}")
    name = args.paths[0] if len(args.paths) == 2 else args.checkpoint or pretrained.DEFAULT
    checkpoint, data = pretrained.checkpoint_path(name), args.paths[-1]
    out_dir = evaluation_dir(args.output, checkpoint, pretrained.model_label(name))
    score_rate = args.score_rate if args.score_rate in ("data", "model") else _rate(args.score_rate)
    result = run_evaluation(checkpoint, data, segment_seconds=args.segment, n=args.n, split=args.split,
                            stems=args.stems, out_dir=out_dir, device=resolve_device(args.device),
                            whole_song=args.whole_song, chunk_seconds=args.chunk_seconds,
                            baselines=() if args.no_baselines else BASELINES,
                            mixture_of_mixtures=args.mixture_of_mixtures, seed=args.seed, level_db=args.level_db,
                            band_above_hz=args.band_above, score_rate=score_rate, high_band=args.high_band,
                            progress=not args.quiet)
    rate = result["sample_rate"]
    source = "the data's rate" if score_rate == "data" else "the model's rate" if score_rate == "model" else "asked"
    print(format_table(result["summary"], band_above_hz=args.band_above,
                       scored_at=f"{rate} Hz ({source}; the model runs at {result['model_sample_rate']} Hz)"))
    if result.get("baselines"):
        rows = {"model": result["summary"], **{k: v["summary"] for k, v in result["baselines"].items()}}
        print(f"\nbeside the non-learned baselines ({result['mode']}, windows of {result['chunk_seconds']:g} s, "
              f"scored at {rate} Hz):\n" + format_comparison(rows, band_above_hz=args.band_above))
    if result["mode"] == PAIRS:
        level = f"relative level drawn in ±{args.level_db:g} dB" if args.level_db else "levels as they are"
        print(f"{len(result['segments'])} pairs of {args.segment:g} s excerpts from {result['songs']} songs (split "
              f"{result['split']!r}, seed {args.seed}, {level}; {len(result['short_songs'])} songs shorter than "
              f"{args.segment:g} s and {len(result['silent_songs'])} without an audible excerpt left out; "
              f"{result['songs_skipped']} files unusable) in {result['seconds']:.1f} s")
    else:
        print(f"{len(result['segments'])} segments of {args.segment:g} s from {result['songs']} songs "
              f"({result['skipped_silent']} silent segments skipped; {result['songs_skipped']} songs unusable) "
              f"in {result['seconds']:.1f} s")
    if args.band_above is not None:
        qualified = result["summary"].get(MULTI, {}).get("band_segments", 0)
        print(f"above {args.band_above:g} Hz: {qualified} of {len(result['segments'])} segments qualify (at least "
              "two references with >= 10 % of the band's energy)")
    print(f"results: {result['json']}")
    if result["plot"]:
        print(f"plot:    {result['plot']}")
    else:
        print(f"plot skipped: {result['plot_skipped']}", file=sys.stderr)
    return 0


def _rate(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--score-rate takes 'data', 'model' or a rate in Hz, got {text!r}") from None


def _cmd_export(args) -> int:
    from trackformer.pretrained import export

    path = export(args.checkpoint, args.out)
    print(f"{path}: {os.path.getsize(path) / 2 ** 20:.1f} MiB inference checkpoint of {args.checkpoint}")
    return 0


def benchmarks_script() -> str:
    """Path of benchmarks/run_all.py in the source checkout this package was imported from."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(root, "benchmarks", "run_all.py")


def _cmd_bench(args) -> int:
    from trackformer.checkpoint_io import resolve_device

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
    from trackformer.checkpoint_io import resolve_device
    from trackformer.demo import run_demo

    run_demo(out_dir=args.output, minutes=args.minutes, device=resolve_device(args.device), n_songs=args.songs)
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="compute device: auto (CUDA when available), cpu, cuda, cuda:N (default auto)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback on errors")


def _separate_description(detailed: bool) -> str:
    from trackformer.pretrained import DEFAULT, describe

    text = ("Separate audio files (any length, rate, mono or stereo; WAV, FLAC, OGG, MP3, AIFF, and m4a/AAC or "
            "video files with PyAV installed) into the model's 8 outputs, written as they are computed to "
            "DIR/<model>/<song>/source_1.wav ... source_8.wav (16-bit WAV by default) at the input's rate and "
            "channels, with masks.png and separation.json. The outputs are UNLABELLED sources: the model learned "
            "without labels (MixIT, unsupervised), so source_1 is not 'vocals' and the order differs from song "
            "to song. They sum to the input.")
    if detailed:  # reads the model card (or, without one, the checkpoint): only for `separate --help` itself
        text += f" The default model ({DEFAULT!r}): {describe(DEFAULT)}"
    return text


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``command`` (the subcommand about to run) decides which parsers are built in full: `data`'s
    only when it is ``"data"``, the shipped model's description in `separate --help` only for ``"separate"``."""
    parser = argparse.ArgumentParser(
        prog="trackformer", description="Unsupervised music source separation (Performer + MixIT).",
        epilog="Run `trackformer COMMAND --help` for the options of a command.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("separate", help="separate songs into 8 unlabelled sources with a trained model",
                       description=_separate_description(command == "separate"))
    p.add_argument("songs", nargs="+", metavar="SONG", help="audio files")
    p.add_argument("-o", "--output", default="separated",
                   help="output folder; stems go to DIR/<model>/... (default ./separated)")
    p.add_argument("--checkpoint", default="default",
                   help="a shipped model's name or a checkpoint path (default: the shipped model 'default')")
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help="window length in seconds (default: the segment length the model was trained on)")
    p.add_argument("--overlap", type=float, default=None,
                   help="overlap of consecutive windows as a fraction of the window, in (0, 0.5] (default 0.5)")
    depth = p.add_mutually_exclusive_group()
    depth.add_argument("--int24", action="store_true", help="write 24-bit integer samples (default 16-bit)")
    depth.add_argument("--float32", action="store_true", help="write 32-bit float WAV samples (default 16-bit)")
    container = p.add_mutually_exclusive_group()
    container.add_argument("--flac", action="store_true", help="write FLAC instead of WAV")
    container.add_argument("--mp3", action="store_true", help="write MP3 instead of WAV")
    p.add_argument("--filename", default=None,
                   help="path of each stem below DIR/<model>, with {track} (input name without extension), "
                        "{trackext}, {stem} (source_1 ...) and {ext} (default {track}/{stem}.{ext})")
    p.add_argument("--no-plot", action="store_true",
                   help="skip masks.png and the mask statistics (faster batch runs)")
    p.add_argument("--high-band", choices=("shares", "even"), default="shares",
                   help="the input's band above the model's Nyquist (e.g. 8-22 kHz for the 16 kHz shipped model "
                        "on 44.1 kHz audio): 'shares' gives each output its share of the model's top band, frame "
                        "by frame; 'even' spreads it evenly over the outputs (default shares)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_common(p)
    p.set_defaults(func=_cmd_separate)

    p = sub.add_parser("evaluate", help="SI-SNR(i) and mask metrics of a checkpoint on songs with stems, or on "
                                        "mixtures of two songs without stems",
                       description="Evaluate a model on a MoisesDB-layout folder (or a stems folder): one-to-one "
                                   "and MixIT-style SI-SNR / SI-SNRi by number of active stems, mask overlap, "
                                   "effective mask count, beside the mixture, an 8-band split and the oracle "
                                   "ideal ratio mask, scored at the data's sample rate. With "
                                   "--mixture-of-mixtures, on real music without stems: excerpts of two songs "
                                   "are summed and each song is one reference. Prints a table, writes JSON and "
                                   "(with matplotlib) a plot into DIR/<model>/ (a new DIR/<model>-N/ when "
                                   "DIR/<model>/ holds another checkpoint's results).")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="DATA (a MoisesDB-layout folder or stems folder; with --mixture-of-mixtures a music corpus "
                        "or any folder of audio files), or CKPT DATA (the checkpoint first, same as --checkpoint)")
    p.add_argument("--checkpoint", default=None,
                   help="a shipped model's name or a checkpoint path (default: the shipped model 'default')")
    p.add_argument("--segment", type=float, default=10.0, help="segment length in seconds (default 10)")
    p.add_argument("--n", type=int, default=None,
                   help="stop after N scored segments (pairs with --mixture-of-mixtures; default: all segments, "
                        "or each song in one pair)")
    p.add_argument("--split", default=None, choices=("all", "train", "valid", "test"),
                   help="songs to use: all, or a part of the split (train/valid as the trainer's; test: a music "
                        "corpus's own; default test for a corpus, else all)")
    p.add_argument("--stems", default="auto", choices=("auto", "musdb", "as-is"),
                   help="references: auto = a song's own stems if at most 4, else (MoisesDB) summed into "
                        "vocals/drums/bass/other (default); musdb = always grouped; as-is = never (songs with "
                        "more than 4 stems are skipped)")
    p.add_argument("--mixture-of-mixtures", action="store_true",
                   help="songs without stems (a corpus from `data index-music`, any folder of audio files, or the "
                        "mixtures of a MoisesDB folder): score the separation of two songs' summed excerpts")
    p.add_argument("--seed", type=int, default=0, help="--mixture-of-mixtures: pairs and excerpts (default 0)")
    p.add_argument("--level-db", type=float, default=0.0,
                   help="--mixture-of-mixtures: relative level of the two songs drawn in ±L dB (default 0: levels "
                        "as they are)")
    p.add_argument("--band-above", type=float, default=None, metavar="HZ",
                   help="also score SI-SNRi on the part above HZ (e.g. 8000), over segments where at least two "
                        "references carry >= 10%% of that band's energy")
    p.add_argument("--score-rate", default="data", metavar="data|model|HZ",
                   help="rate the outputs are scored at: the data's files' rate (default), the model's, or HZ")
    p.add_argument("--high-band", choices=("shares", "even"), default="shares",
                   help="how the separation splits the band above the model's Nyquist, as `separate --high-band` "
                        "(default shares)")
    p.add_argument("--whole-song", action="store_true",
                   help="separate each song once, whole (as `separate` does), then score its segments")
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help="separation window (default: the checkpoint's training segment, as `separate`)")
    p.add_argument("--no-baselines", action="store_true",
                   help="skip the mixture / 8-band split / oracle ideal-ratio-mask rows")
    p.add_argument("-o", "--output", default=os.path.join("outputs", "evaluate"),
                   help="folder for the results; each model gets DIR/<model>/ (default outputs/evaluate)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_common(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("export", help="write the slim inference checkpoint of a training checkpoint",
                       description="Write CKPT's model (name, config, weights), training config, stage, step and "
                                   "last validation metrics to OUT, without optimizer and RNG states: the file "
                                   "shipped as trackformer/pretrained/<name>.pt.")
    p.add_argument("checkpoint", metavar="CKPT", help="a training checkpoint (or a shipped model's name)")
    p.add_argument("out", metavar="OUT", help="output .pt file")
    _add_common(p)
    p.set_defaults(func=_cmd_export)

    train_cli.add_parser(sub)
    if command == "data":
        from trackformer.data import cli as data_cli

        data_cli.add_parser(sub)
    else:
        sub.add_parser("data", help=DATA_HELP, add_help=False)

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


def _command(argv: list[str]) -> str | None:
    """The subcommand in ``argv``: its first word that is not an option (the top level has only flags)."""
    return next((a for a in argv if not a.startswith("-")), None)


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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command(argv))
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
