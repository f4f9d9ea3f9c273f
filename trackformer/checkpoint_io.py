"""Checkpoint files and the device their models run on: what inference (:mod:`trackformer.pretrained`,
:mod:`trackformer.separate`) and training (:mod:`trackformer.train`) both need, below all of them.

    resolve_device("auto")                  -> torch.device (CUDA when available), checked to exist
    save_checkpoint(path, payload)          atomic write of a checkpoint dict (format keys added)
    load_separator(path, device)            -> (model in eval mode on device, info) for separation

Reading a checkpoint (:func:`trackformer.registry.load_checkpoint`, :func:`~trackformer.registry.load_model`)
lives in :mod:`trackformer.registry`; the training state a checkpoint also holds (optimizer, RNG, ...) in
:mod:`trackformer.train.checkpoint`.
"""

import os
import tempfile

import torch

import trackformer


def resolve_device(name: str) -> torch.device:
    """"auto" → cuda if available else cpu; otherwise ``torch.device(name)``, checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device {name!r} is not a valid torch device ('cpu', 'cuda', 'cuda:1', 'auto')") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA "
                         "device(s), numbered from 0")
    return device


def save_checkpoint(path: str, payload: dict) -> str:
    """Writes ``payload`` (plus format/version keys) to ``path`` atomically: a temporary file in the same
    folder, fsynced and renamed over the target, so a reader sees the old or the new file, never a partial one.
    Returns ``path``."""
    from trackformer.registry import FORMAT, FORMAT_VERSION

    payload = dict(payload, format=FORMAT, format_version=FORMAT_VERSION,
                   trackformer_version=trackformer.__version__)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Also on KeyboardInterrupt / SystemExit: leave no partial file behind.
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return path


def load_separator(path: str, device) -> tuple[torch.nn.Module, dict]:
    """A trained separator from a checkpoint, in eval mode on ``device``; ValueError for a pre-training
    checkpoint (its mask head is untrained). Checkpoint errors come from ``trackformer.registry.load_model``."""
    from trackformer.registry import load_model

    model, info = load_model(path, map_location="cpu")
    if info.get("stage") == "pretrain":
        raise ValueError(f"{path} is an Audio-MAE pre-training checkpoint: its mask head is untrained. Train it "
                         "with MixIT first (trackformer train --init-from ...) and separate with that checkpoint")
    return model.to(device).eval(), info
