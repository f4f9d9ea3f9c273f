"""Separation models and the registry checkpoints use to rebuild them.

``build_model(name, config)`` with name "performer" (:class:`PerformerSeparator`, config = SeparatorConfig
fields) or "convtasnet" (:class:`trackformer.baselines.ConvTasNet`, config = its constructor arguments);
``model_name(model)`` and ``model_config(model)`` give back the pair, so a checkpoint stores
``{"model": model_name(m), "config": model_config(m), "state_dict": m.state_dict()}``.
"""

from torch import nn

from trackformer.models.aux_losses import diversity_loss, sparsity_loss
from trackformer.models.separator import PerformerSeparator, SeparatorConfig

MODEL_NAMES = ("performer", "convtasnet")

__all__ = ["MODEL_NAMES", "PerformerSeparator", "SeparatorConfig", "build_model", "diversity_loss",
           "model_config", "model_name", "sparsity_loss"]


def build_model(name: str, config: dict | None = None) -> nn.Module:
    """A fresh model of registry ``name`` from a plain ``config`` dict (None or missing keys: defaults)."""
    config = {} if config is None else dict(config)
    if name == "performer":
        return PerformerSeparator(SeparatorConfig.from_dict(config))
    if name == "convtasnet":
        from trackformer.baselines import ConvTasNet  # here: trackformer.baselines imports this package

        return ConvTasNet.from_config(config)
    raise ValueError(f"unknown model name {name!r}; expected one of {MODEL_NAMES}")


def model_name(model: nn.Module) -> str:
    """Registry name of ``model`` (inverse of :func:`build_model`)."""
    from trackformer.baselines import ConvTasNet

    if isinstance(model, PerformerSeparator):
        return "performer"
    if isinstance(model, ConvTasNet):
        return "convtasnet"
    raise TypeError(f"{type(model).__name__} is not a registered model; expected one of {MODEL_NAMES}")


def model_config(model: nn.Module) -> dict:
    """Plain config dict of ``model``, such that ``build_model(model_name(model), model_config(model))``
    rebuilds the same architecture."""
    return model.config.to_dict() if model_name(model) == "performer" else model.config
