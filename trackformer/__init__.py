"""trackformer: unsupervised music source separation with fused FAVOR+ Performer kernels and exact MixIT.

Public entry points (see README.md):
  trackformer.kernels  favor_attention, favor_features, orthogonal_random_features (fused Triton kernels)
  trackformer.mixit    mixit_loss, best_assignment (C++/CUDA assignment search)
  trackformer.metrics  si_snr, si_snri, mask metrics
"""

__version__ = "0.1.0"
