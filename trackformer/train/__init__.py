"""Training: MixIT (:func:`fit`), Audio-MAE pre-training (:func:`pretrain`), checkpoints and DDP.

    config = preset("tiny-cpu").replace(max_steps=500, run_dir="runs/try")
    last = fit(config)                      # run_dir/checkpoints/last.pt
    model, info = load_model(last)          # for inference
    fit(config.replace(max_steps=1000), resume=True)   # continues exactly where it stopped

The same call under ``torchrun --nproc_per_node=N`` trains with DistributedDataParallel.
"""

from trackformer.train.checkpoint import CheckpointError, load_checkpoint, load_model
from trackformer.train.config import PRESETS, TrainConfig, apply_overrides, load_config, preset, save_config
from trackformer.train.trainer import Trainer, evaluate, fit, pretrain

__all__ = ["PRESETS", "CheckpointError", "TrainConfig", "Trainer", "apply_overrides", "evaluate", "fit",
           "load_checkpoint", "load_config", "load_model", "preset", "pretrain", "save_config"]
