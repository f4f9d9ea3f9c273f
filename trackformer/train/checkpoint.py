"""Checkpoints: atomic writes, validated reads, RNG capture, and :func:`load_model` for inference.

A checkpoint is one ``torch.save`` file holding a dict:
  format "trackformer-checkpoint", format_version, trackformer_version, stage ("mixit" | "pretrain"),
  model {name, config, state}, optimizer, scheduler, scaler (fp16 only, else None), rng (one entry per rank:
  torch, cuda, numpy, python), step, epoch, examples_in_epoch (global examples of the epoch already trained on),
  world_size, config (the TrainConfig dict), metrics (the last validation, or {}), reason ("periodic", "done",
  "max_minutes", "SIGTERM", "SIGINT"). Readers need only format, format_version, stage, step, config and model.
Files are written to a temporary file in the same folder, fsynced and renamed over the target, so a reader sees
either the old or the new checkpoint, never a partial one. Reads use ``torch.load(weights_only=True)`` (no
arbitrary code runs) and raise :class:`CheckpointError` naming the file for anything unusable.
"""

import os
import random
import tempfile

import numpy as np
import torch

import trackformer

FORMAT = "trackformer-checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("model", "step", "config", "stage")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt, of another format version or of another model."""


def save_checkpoint(path: str, payload: dict) -> str:
    """Writes ``payload`` (plus format/version keys) to ``path`` atomically; returns ``path``."""
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


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Reads and validates a checkpoint written by :func:`save_checkpoint`; raises CheckpointError naming ``path``."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if isinstance(map_location, (str, torch.device)) and torch.device(map_location).type == "cuda" \
            and not torch.cuda.is_available():
        raise ValueError(f"map_location={str(map_location)!r} but CUDA is not available; load {path} with 'cpu'")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, foreign objects: all mean "unusable file"
        raise CheckpointError(f"{path} is not a readable trackformer checkpoint (truncated or corrupt?): "
                              f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a trackformer checkpoint (no '{FORMAT}' format marker)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r} (written by trackformer "
                              f"{payload.get('trackformer_version', '?')}); this trackformer "
                              f"({trackformer.__version__}) reads version {FORMAT_VERSION}")
    missing = [k for k in _REQUIRED if k not in payload]
    model = payload.get("model")
    if missing or not isinstance(model, dict) or not {"name", "config", "state"} <= set(model):
        raise CheckpointError(f"{path} is incomplete: missing {missing or ['model name/config/state']}")
    return payload


def build_checkpoint_model(payload: dict, path: str) -> torch.nn.Module:
    """The model described by a loaded checkpoint, with its weights; CheckpointError naming ``path`` otherwise."""
    from trackformer.models import build_model

    name, config, state = payload["model"]["name"], payload["model"]["config"], payload["model"]["state"]
    try:
        model = build_model(name, config)
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"{path} holds a model this trackformer cannot build ({name!r}, {config}): "
                              f"{err}") from err
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit model {name!r} with config {config}: "
                              f"{str(err).splitlines()[0]}") from err
    return model


def load_model(path: str, map_location="cpu") -> tuple[torch.nn.Module, dict]:
    """A trained model in eval mode for inference, and facts about it.

    Returns ``(model, info)``; info has name, model_config, sample_rate (Hz), channels, segment_seconds, stage
    ("mixit" or "pretrain": a pre-trained model's mask head is untrained), step, metrics, trackformer_version,
    config (the TrainConfig dict).
    """
    payload = load_checkpoint(path, map_location=map_location)
    model = build_checkpoint_model(payload, path)
    model.eval()
    config = payload["config"]
    info = dict(name=payload["model"]["name"], model_config=payload["model"]["config"],
                sample_rate=config.get("sample_rate"), channels=config.get("channels"),
                segment_seconds=config.get("segment_seconds"), stage=payload["stage"], step=payload["step"],
                metrics=payload.get("metrics", {}), trackformer_version=payload.get("trackformer_version"),
                config=config)
    return model, info


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
