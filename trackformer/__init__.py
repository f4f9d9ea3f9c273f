"""trackformer: unsupervised music source separation with fused FAVOR+ Performer kernels and exact MixIT.

Public entry points (see README.md):
  trackformer.Separator   separate files and tensors with a trained model (the shipped one by default)
  trackformer.pretrained  checkpoint_path, load, export: the models shipped in trackformer/pretrained/
  trackformer.kernels     favor_attention, favor_features, orthogonal_random_features (fused Triton kernels)
  trackformer.mixit       mixit_loss, best_assignment (C++/CUDA assignment search)
  trackformer.metrics     si_snr, si_snri, mask metrics

``import trackformer`` is light: ``Separator`` and the subpackages load (with torch) on first use.
"""

import importlib

__version__ = "0.1.0"

__all__ = ["Separator", "__version__", "pretrained"]


def __getattr__(name: str):
    if name == "Separator":
        from trackformer.separate import Separator

        return Separator
    if name == "pretrained":
        return importlib.import_module("trackformer.pretrained")
    raise AttributeError(f"module 'trackformer' has no attribute {name!r}")
