"""Writing checkpoints (atomic, with every rank's RNG state) for training and exact resume.

A checkpoint is one ``torch.save`` file holding a dict:
  format "trackformer-checkpoint", format_version, trackformer_version, stage ("mixit" | "pretrain"),
  model {name, config, state}, optimizer, scheduler, scaler (fp16 only, else None), rng (one entry per rank:
  torch, cuda, numpy, python), step, epoch, examples_in_epoch (global examples of the epoch already trained on),
  world_size, config (the TrainConfig dict), metrics (the last validation, or {}), reason ("periodic",
  "max_steps=N", "epochs=N", "max_minutes", "SIGTERM", "SIGINT": why the run stopped there). Readers need only
  format, format_version, stage, step, config and model.
Files are written atomically by :func:`trackformer.checkpoint_io.save_checkpoint` (imported here, where the
trainer and its tests import it). Reading (:func:`trackformer.registry.load_checkpoint`,
:func:`~trackformer.registry.load_model`) lives in :mod:`trackformer.registry`, which inference imports alone.
"""

import random

import numpy as np
import torch

from trackformer.checkpoint_io import save_checkpoint

__all__ = ["capture_rng", "restore_rng", "save_checkpoint"]


def capture_rng() -> dict:
    """This process's RNG states (torch CPU, every CUDA device, numpy global, python ``random``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return dict(torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                numpy=dict(name=name, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                           has_gauss=int(has_gauss), cached=float(cached)),
                python=random.getstate())


def restore_rng(state: dict) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
