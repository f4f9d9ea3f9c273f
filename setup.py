"""Build of trackformer: the Python package, the Triton kernels folder and one torch extension from csrc/.

Metadata and dependencies are in pyproject.toml; MANIFEST.in lists the sources the sdist carries. Build without
isolation so the extension compiles against the installed torch: ``pip install --no-build-isolation .``.

The extension ``trackformer._C`` always holds the CPU C++ sources. The CUDA sources (``csrc/**/*.cu``) are added
when torch is a CUDA build and nvcc is found, or when ``FORCE_CUDA=1``. ``TORCH_CUDA_ARCH_LIST`` picks the
architectures; by default 7.0 (V100, where the CUDA toolkit still supports it) and 9.0 (H100/H200).
"""

import glob
import os
import shutil
import subprocess

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _nvcc_archs():
    """Architectures the local nvcc can compile for, as '7.0'-style strings."""
    nvcc = os.path.join(CUDA_HOME or "", "bin", "nvcc") if CUDA_HOME else shutil.which("nvcc")
    try:
        out = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError, TypeError):
        return []
    return [f"{a[-2]}.{a[-1]}" for a in out.split() if a.startswith("compute_") and len(a) == 10]


def _want_cuda():
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None


def _extension():
    cpp = sorted(glob.glob("csrc/**/*.cpp", recursive=True))
    cu = sorted(glob.glob("csrc/**/*.cu", recursive=True))
    cxx = ["-O3", "-g0", "-std=c++17", "-fopenmp", "-ffp-contract=off"]  # no FMA contraction: host rounds alike
    nvcc = ["-O3", "-lineinfo", "-Xcompiler", "-ffp-contract=off"]  # no fast math: subnormals and IEEE division kept
    if not _want_cuda():
        return CppExtension("trackformer._C", cpp, extra_compile_args={"cxx": cxx},
                            extra_link_args=["-fopenmp"])
    if "TORCH_CUDA_ARCH_LIST" not in os.environ:
        supported = _nvcc_archs()
        os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(a for a in ("7.0", "9.0") if a in supported) or "9.0"
    return CUDAExtension("trackformer._C", cpp + cu,
                         define_macros=[("TRACKFORMER_WITH_CUDA", None)],
                         extra_compile_args={"cxx": cxx, "nvcc": nvcc},
                         extra_link_args=["-fopenmp"])


packages = find_packages(include=["trackformer", "trackformer.*"])
# The Triton kernels live in the top-level kernels/ folder and are imported as trackformer.kernels.
packages += ["trackformer.kernels"] + [
    "trackformer.kernels." + p for p in find_packages(where="kernels")]

setup(
    packages=packages,
    package_dir={"trackformer.kernels": "kernels"},
    # py.typed (PEP 561) and the shipped model (a checkpoint and its model card); MANIFEST.in puts them in the sdist.
    package_data={"trackformer": ["py.typed"], "trackformer.pretrained": ["*.pt", "*.md"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
