"""``trackformer train`` and ``trackformer pretrain``: argument parsing onto :class:`TrainConfig`.

    trackformer train --preset tiny-cpu --max-steps 500 --run-dir runs/try
    trackformer train --config configs/paper_10s.yaml --root /data/moisesdb --set lr=3e-4 --resume
    torchrun --nproc_per_node=4 -m trackformer train --preset paper-10s --root /data/moisesdb

The config comes from ``--config FILE`` or ``--preset NAME``; the explicit flags and then ``--set key=value``
(repeatable; ``model_config.d_model=128`` reaches into the model config) override it.
"""

import argparse
import logging
import os
import textwrap

from trackformer.train.config import DATA_SOURCES, PRESETS, apply_overrides, load_config, preset

_EXAMPLES = """examples:
  trackformer train --preset tiny-cpu --max-steps 500 --run-dir runs/try
  trackformer train --config configs/paper_10s.yaml --root /data/moisesdb --set lr=3e-4 --resume
  torchrun --nproc_per_node=4 -m trackformer train --preset paper-10s --root /data/moisesdb"""

# flag → TrainConfig field, for the common overrides
_FLAGS = {"data": "data", "root": "root", "segment": "segment_seconds", "max_steps": "max_steps",
          "max_minutes": "max_minutes", "run_dir": "run_dir", "init_from": "init_from", "device": "device",
          "batch_size": "batch_size", "workers": "workers", "amp": "amp", "seed": "seed"}


def _add_common(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", metavar="FILE", help="YAML file of TrainConfig fields")
    source.add_argument("--preset", choices=PRESETS, help="a built-in configuration")
    parser.add_argument("--data", choices=DATA_SOURCES, help="data source (corpus: recordings without stems)")
    parser.add_argument("--root", help="dataset folder (MoisesDB or one folder per song with stem files)")
    parser.add_argument("--segment", type=float, metavar="SECONDS", help="training segment length in seconds")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    parser.add_argument("--max-minutes", type=float, help="wall-time budget; stops cleanly with a checkpoint")
    parser.add_argument("--run-dir", help="folder for config.yaml, metrics.jsonl, TensorBoard and checkpoints")
    parser.add_argument("--init-from", metavar="CKPT", help="initialise the encoder from this (MAE) checkpoint")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, help="examples per process and step")
    parser.add_argument("--workers", type=int, help="data loader worker processes")
    parser.add_argument("--amp", choices=("off", "bf16", "fp16"), help="mixed precision on CUDA")
    parser.add_argument("--seed", type=int, help="seed of everything (data, init, dropout)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any TrainConfig field (value parsed as YAML); repeatable")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its last checkpoint (exactly where it stopped)")


def config_from_args(args: argparse.Namespace):
    """The TrainConfig that ``args`` (from :func:`add_parser`'s parsers) describe."""
    config = load_config(args.config) if args.config else preset(args.preset)
    flags = {field: getattr(args, flag) for flag, field in _FLAGS.items() if getattr(args, flag) is not None}
    return apply_overrides(config.replace(**flags), list(args.set))


def _runner(stage: str):
    def run(args: argparse.Namespace) -> int:
        from trackformer.train.trainer import Trainer

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        config = config_from_args(args)
        trainer = Trainer(config, "mixit" if stage == "train" else "pretrain")
        path = trainer.run(resume=args.resume)
        if os.environ.get("RANK", "0") == "0":  # under torchrun: once
            again = " (continue with --resume)" if trainer.stop_reason in ("max_minutes", "SIGINT", "SIGTERM") else ""
            print(f"stopped by {trainer.stop_reason}{again}; last checkpoint: {path}")
        return 0

    return run


def add_parser(subparsers) -> None:
    """Registers ``train`` (MixIT) and ``pretrain`` (Audio-MAE) on an argparse ``subparsers`` object."""
    common = ("The configuration comes from --config FILE or --preset NAME; the flags, then --set key=value, "
              "override its fields. Under `torchrun --nproc_per_node=N` training is data-parallel.")
    train = subparsers.add_parser("train", help="MixIT training of a separator",
                                  description=textwrap.fill("MixIT (unsupervised) training of a separator. " + common),
                                  epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(train)
    train.set_defaults(func=_runner("train"))
    pre = subparsers.add_parser("pretrain", help="Audio-MAE pre-training of the Performer encoder",
                                description="Audio-MAE pre-training of the Performer encoder; pass its checkpoint "
                                            "to `trackformer train --init-from`. " + common)
    _add_common(pre)
    pre.set_defaults(func=_runner("pretrain"))
