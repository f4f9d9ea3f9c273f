"""Training: MixIT (:func:`fit`), Audio-MAE pre-training (:func:`pretrain`), validation, checkpoints and DDP.

    config = preset("tiny-cpu").replace(max_steps=500, run_dir="runs/try")
    last = fit(config)                      # run_dir/checkpoints/last.pt
    fit(config.replace(max_steps=1000), resume=True)   # continues exactly where it stopped
    model, info = trackformer.registry.load_model(last)   # for inference

The same call under ``torchrun --nproc_per_node=N`` trains with DistributedDataParallel. The training loop and
validation are imported on first use, so ``trackformer --help`` and the CLI's parsers stay light.
"""

import importlib

from trackformer.train.config import PRESETS, TrainConfig, apply_overrides, load_config, preset, save_config

_LAZY = {"Trainer": "trainer", "fit": "trainer", "pretrain": "trainer", "validate": "validation"}

__all__ = ["PRESETS", "TrainConfig", "Trainer", "apply_overrides", "fit", "load_config", "preset", "pretrain",
           "save_config", "validate"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"trackformer.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'trackformer.train' has no attribute {name!r}")
