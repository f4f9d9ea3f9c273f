"""The model registry and the reading side of checkpoints: what inference needs, without the training stack.

    model, info = load_model("run/checkpoints/last.pt")      # eval mode, on the CPU
    model = build_model("performer", {"n_layers": 4})        # a fresh model of a registered name
    build_model(model_name(model), model_config(model))      # rebuilds the same architecture

Registered names: "performer" (:class:`~trackformer.models.PerformerSeparator`, config = SeparatorConfig fields)
and "convtasnet" (:class:`~trackformer.baselines.ConvTasNet`, config = its constructor arguments). A checkpoint
is one ``torch.save`` dict with format "trackformer-checkpoint", format_version, stage, step, config (the
TrainConfig dict) and model {name, config, state}; ``trackformer.train.checkpoint`` writes it. Reads use
``torch.load(weights_only=True)`` (no arbitrary code runs) and raise :class:`CheckpointError` naming the file.
"""

import os
from typing import Protocol, runtime_checkable

import torch
from torch import nn

import trackformer
from trackformer.baselines import ConvTasNet
from trackformer.models import PerformerSeparator, SeparatorConfig

MODEL_NAMES = ("performer", "convtasnet")
FORMAT = "trackformer-checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("model", "step", "config", "stage")

__all__ = ["FORMAT", "FORMAT_VERSION", "MODEL_NAMES", "CheckpointError", "Separator", "build_model",
           "load_checkpoint", "load_model", "model_config", "model_name"]


@runtime_checkable
class Separator(Protocol):
    """What a separation model offers: ``model(mixture)`` (B, C, T) → estimates (B, M, C, T), exactly T samples.

    ``sample_rate``: the rate it was built for (Hz). ``channels``: the channel count C it requires, or None when it
    separates any count (each channel on its own). ``has_masks``: it also offers ``model.spectrogram(mixture)``
    (complex (B, C, F, L)) and ``model(mixture, return_masks=True)`` → (estimates, masks (B, M, C, F, L)), with
    ``return_magnitude=True`` also |X| (B, C, F, L) from the same STFT.
    """

    sample_rate: int
    channels: int | None
    has_masks: bool

    def __call__(self, mixture: torch.Tensor, *args, **kwargs): ...


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt, of another format version or of another model."""


def build_model(name: str, config: dict | None = None) -> nn.Module:
    """A fresh model of registry ``name`` from a plain ``config`` dict (None or missing keys: defaults)."""
    config = {} if config is None else dict(config)
    if name == "performer":
        return PerformerSeparator(SeparatorConfig.from_dict(config))
    if name == "convtasnet":
        return ConvTasNet.from_config(config)
    raise ValueError(f"unknown model name {name!r}; expected one of {MODEL_NAMES}")


def model_name(model: nn.Module) -> str:
    """Registry name of ``model`` (inverse of :func:`build_model`)."""
    if isinstance(model, PerformerSeparator):
        return "performer"
    if isinstance(model, ConvTasNet):
        return "convtasnet"
    raise TypeError(f"{type(model).__name__} is not a registered model; expected one of {MODEL_NAMES}")


def model_config(model: nn.Module) -> dict:
    """Plain config dict of ``model``, such that ``build_model(model_name(model), model_config(model))``
    rebuilds the same architecture."""
    return model.config.to_dict() if model_name(model) == "performer" else model.config


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Reads and validates a trackformer checkpoint; raises CheckpointError naming ``path``."""
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


def _checkpoint_model(payload: dict, path: str) -> nn.Module:
    """The model described by a loaded checkpoint, with its weights; CheckpointError naming ``path`` otherwise."""
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


def load_model(path: str, map_location="cpu") -> tuple[nn.Module, dict]:
    """A trained model in eval mode for inference, and facts about it.

    Returns ``(model, info)``; info has name, model_config, sample_rate (Hz), channels, segment_seconds, stage
    ("mixit" or "pretrain": a pre-trained model's mask head is untrained), step, metrics, trackformer_version,
    config (the TrainConfig dict).
    """
    payload = load_checkpoint(path, map_location=map_location)
    model = _checkpoint_model(payload, path)
    model.eval()
    config = payload["config"]
    info = dict(name=payload["model"]["name"], model_config=payload["model"]["config"],
                sample_rate=config.get("sample_rate"), channels=config.get("channels"),
                segment_seconds=config.get("segment_seconds"), stage=payload["stage"], step=payload["step"],
                metrics=payload.get("metrics", {}), trackformer_version=payload.get("trackformer_version"),
                config=config)
    return model, info
