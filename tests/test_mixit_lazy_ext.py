"""The compiled extension is loaded on the first MixIT op call, not at import (trackformer/_ext.py)."""

import os
import subprocess
import sys

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from trackformer.mixit import best_assignment, mixit_loss
from trackformer.mixit.search import search

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WITHOUT_C = """
import sys
sys.modules["trackformer._C"] = None  # what a missing or broken build looks like
import torch
import trackformer, trackformer.mixit
from trackformer.mixit import mixit_bruteforce, mixit_loss
est, mix = torch.randn(2, 4, 50), torch.randn(2, 2, 50)
mixit_bruteforce(est, mix)  # plain PyTorch: needs no extension
try:
    mixit_loss(est, mix)
except RuntimeError as err:
    print("error:", err)
"""


def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_does_not_load_the_extension():
    out = _python("import sys, trackformer, trackformer.mixit; print('trackformer._C' in sys.modules)")
    assert out.strip() == "False"


def test_first_op_call_without_the_extension_says_how_to_build_it():
    out = _python(WITHOUT_C)
    assert out.startswith("error: trackformer's compiled extension (trackformer._C") and "make build" in out


def test_compiled_loss_loads_the_extension_while_tracing():
    """torch.compile(fullgraph=True) of the loss before any op ran: _ext.load runs once at trace time."""
    out = _python("import sys, torch\nfrom trackformer.mixit import mixit_loss\n"
                  "est, mix = torch.randn(2, 4, 2, 50), torch.randn(2, 2, 2, 50)\n"
                  "got = torch.compile(mixit_loss, fullgraph=True, backend='eager')(est, mix)\n"
                  "torch.testing.assert_close(got, mixit_loss(est, mix))\n"
                  "print('trackformer._C' in sys.modules)")
    assert out.strip() == "True"


@pytest.fixture
def cpu_only_build(monkeypatch):
    """The loaded _C as a CPU-only build sees it: no CUDA kernel for the trackformer ops."""
    has_kernel = torch._C._dispatch_has_kernel_for_dispatch_key

    def fake(op, key):
        return False if op.startswith("trackformer::") and key == "CUDA" else has_kernel(op, key)

    monkeypatch.setattr(torch._C, "_dispatch_has_kernel_for_dispatch_key", fake)


def test_cpu_only_build_given_cuda_tensors_says_to_rebuild_with_cuda(cpu_only_build):
    best_assignment(torch.randn(1, 4, 20), torch.randn(1, 2, 20))  # loads _C; CPU tensors are fine
    with FakeTensorMode():  # CUDA tensors without a GPU
        est, mix = torch.empty(2, 4, 100, device="cuda"), torch.empty(2, 2, 100, device="cuda")
        with pytest.raises(RuntimeError, match=r"mixit_stats got CUDA tensors.*FORCE_CUDA=1 make build"):
            mixit_loss(est, mix)
        g, c, e = (torch.empty(shape, device="cuda") for shape in ((2, 4, 4), (2, 4, 2), (2, 2)))
        with pytest.raises(RuntimeError, match=r"mixit_search got CUDA tensors.*FORCE_CUDA=1"):
            search(g, c, e, 1e-3)
