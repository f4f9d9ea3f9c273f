"""Baseline separators to compare the Performer against: :class:`ConvTasNet` (torchaudio's default layout)."""

from trackformer.baselines.convtasnet import ConvTasNet

__all__ = ["ConvTasNet"]
