"""Separation models: :class:`PerformerSeparator` (its :class:`SeparatorConfig`) and the auxiliary losses.

Building a model by name and loading checkpoints live one level up, in :mod:`trackformer.registry`.
"""

from trackformer.models.aux_losses import diversity_loss, sparsity_loss
from trackformer.models.separator import PerformerSeparator, SeparatorConfig

__all__ = ["PerformerSeparator", "SeparatorConfig", "diversity_loss", "sparsity_loss"]
