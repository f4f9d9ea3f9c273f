"""trackformer.kernels: fused Triton kernels (this folder is installed as ``trackformer.kernels``)."""
