"""The build: the extension loads, and every .cu file compiles without torch headers on a CPU machine."""

import glob
import os
import shutil
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CU_FILES = sorted(glob.glob(os.path.join(ROOT, "csrc", "**", "*.cu"), recursive=True))


def _nvcc():
    home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    path = os.path.join(home, "bin", "nvcc")
    return path if os.path.exists(path) else shutil.which("nvcc")


def _archs(nvcc):
    out = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, check=True).stdout
    have = {a.removeprefix("compute_") for a in out.split()}
    # V100 is sm_70 (dropped by CUDA 13; the oldest supported arch stands in), H100/H200 sm_90.
    oldest = "70" if "70" in have else min(have, key=int)
    return sorted({oldest, "90"} & have)


def test_extension_loads_and_exposes_the_ops():
    from trackformer import _ext

    ops = _ext.ops()
    assert ops is torch.ops.trackformer
    assert hasattr(ops, "mixit_search") and hasattr(ops, "mixit_stats")


def test_missing_extension_names_what_to_build(monkeypatch):
    import trackformer
    from trackformer import _ext

    monkeypatch.setattr(_ext, "_loaded", False)
    monkeypatch.delattr(trackformer, "_C", raising=False)
    monkeypatch.setitem(sys.modules, "trackformer._C", None)  # what an absent or broken build looks like
    with pytest.raises(RuntimeError, match=r"trackformer\._C.*make build"):
        _ext.ops()


@pytest.mark.parametrize("source", CU_FILES, ids=[os.path.relpath(p, ROOT) for p in CU_FILES])
def test_cuda_source_compiles_without_torch(source, tmp_path):
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found (set CUDA_HOME)")
    text = open(source).read()
    assert "#include <torch" not in text and "#include <ATen" not in text and "#include <c10" not in text, (
        f"{source} includes torch headers; keep .cu files plain CUDA")
    for arch in _archs(nvcc):
        cmd = [nvcc, "-c", source, "-o", str(tmp_path / f"k{arch}.o"), f"-arch=sm_{arch}", "-O3",
               "-std=c++17", "-I", os.path.join(ROOT, "csrc")]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, f"nvcc failed for sm_{arch}:\n{res.stderr}"
