"""The training step's cheaper paths keep the math: MixIT on remixed masks (mixit_loss_of_masks) and the trainer's
Objective give the loss and gradients of mixit_loss on the separator's estimates, up to float rounding."""

import json
import pathlib
import subprocess
import sys

import pytest
import torch

from trackformer.mixit import mixit_loss
from trackformer.mixit.loss import mixit_loss_of_masks
from trackformer.models import PerformerSeparator, SeparatorConfig, diversity_loss
from trackformer.models.stft import istft_frame_major
from trackformer.train.config import preset
from trackformer.train.trainer import Objective

TINY = dict(n_fft=128, hop=32, d_model=32, n_layers=1, n_heads=2, nb_features=16, ffn=64, dropout=0.0)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same_grads(a, b, rtol):
    assert a.keys() == b.keys() and a
    for name in a:
        scale = a[name].abs().max().clamp_min(1e-12)
        assert ((a[name] - b[name]).abs().max() / scale) < rtol, name


@pytest.mark.parametrize("channels, n_fft, hop", [(1, 128, 32), (2, 96, 40)])  # hop 40: the iSTFT fallback
def test_mixit_loss_of_masks_equals_mixit_loss_on_the_estimates(channels, n_fft, hop):
    torch.manual_seed(0)
    model = PerformerSeparator(SeparatorConfig(**dict(TINY, n_fft=n_fft, hop=hop, channels=channels)))
    refs = 0.1 * torch.randn(3, 2, channels, 1500)
    mixture = refs.sum(1)
    expected = mixit_loss(model(mixture), refs)
    expected.backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    masks, spec = model.frame_masks(mixture)
    loss = mixit_loss_of_masks(masks, lambda k: model.synthesize(k, spec, mixture.shape[-1]), refs)
    loss.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    _assert_same_grads(want, _grads(model), 1e-4)


def test_mixit_loss_of_masks_rejects_bad_mixtures():
    masks = torch.rand(2, 5, 4, 1, 9)
    with pytest.raises(ValueError, match="mixit"):
        mixit_loss_of_masks(masks, lambda k: torch.randn(2, k.shape[2], 1, 100), torch.randn(2, 2, 1, 99))
    with pytest.raises(ValueError, match="NaN or inf"):
        mixit_loss_of_masks(masks, lambda k: torch.full((2, k.shape[2], 1, 100), float("nan")),
                            torch.randn(2, 2, 1, 100))


@pytest.mark.parametrize("diversity", [0.0, 0.1])
def test_objective_matches_the_plain_mixit_objective(diversity):
    """The trainer's Objective (masks remixed before the iSTFT) against mixit_loss(model(x1 + x2)) + the
    diversity term computed from the model's own outputs; the sparsity term keeps the waveform path."""
    cfg = preset("tiny-cpu").replace(diversity_weight=diversity, sample_rate=8000)
    torch.manual_seed(0)
    model = PerformerSeparator(SeparatorConfig(**dict(TINY, sample_rate=8000, channels=1)))
    x1, x2 = 0.1 * torch.randn(2, 1, 2000), 0.1 * torch.randn(2, 1, 2000)
    est, masks, mag = model(x1 + x2, return_masks=True, return_magnitude=True)
    mixit = mixit_loss(est, torch.stack((x1, x2), 1))
    expected = mixit + diversity * diversity_loss(masks, mag) if diversity else mixit
    expected.backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    loss, parts = Objective(model, "mixit", cfg)(x1, x2)
    loss.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(parts["mixit"], mixit.detach(), rtol=1e-5, atol=1e-5)
    assert ("diversity" in parts) == (diversity > 0)
    _assert_same_grads(want, _grads(model), 1e-4)
    sparse, parts = Objective(model, "mixit", cfg.replace(sparsity_weight=0.01))(x1, x2)
    assert set(parts) >= {"mixit", "sparsity"} and torch.isfinite(sparse)


_FAULTS = """
import resource, sys, torch
from trackformer.train.trainer import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "1" else False
x = torch.ones(16 * 2**20)
del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):  # a step's pattern: the same large tensors allocated, filled and freed again
    x, y = torch.ones(16 * 2**20), torch.ones(16 * 2**20)
    del x, y
print(int(applied), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_keep_freed_memory_cuts_page_faults_of_reallocated_tensors():
    """With keep_freed_memory, reallocating freed 64 MiB tensors page-faults far less than glibc's default (which
    unmaps them on free: 16,384 faults per tensor); measured 163,850 vs 30,720 faults here."""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt")
    counts = {}
    for flag in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", _FAULTS, flag], capture_output=True, text=True, check=True)
        applied, faults = map(int, out.stdout.split())
        counts[flag] = faults
    if not applied:
        pytest.skip("not glibc")
    assert counts["1"] * 2 < counts["0"], counts


def test_frame_major_istft_under_torch_compile():
    """torch.compile (the trainer's compile: true) of the frame-major iSTFT gives eager's values and gradients."""
    torch.manual_seed(0)
    window = torch.hann_window(64)
    spec = torch.randn(2, 9, 3, 1, 33, dtype=torch.complex64, requires_grad=True)  # (B, L, M, C, F)
    eager = istft_frame_major(spec, 64, 16, window, 130)
    compiled = torch.compile(istft_frame_major)(spec, 64, 16, window, 130)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(eager)
    (want,) = torch.autograd.grad(eager, spec, grad)
    (got,) = torch.autograd.grad(compiled, spec, grad)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_profile_train_step_script_reports_throughput(tmp_path, capsys):
    """benchmarks/profile_train_step.py: one profiled step of a small 8 kHz run prints its throughput line."""
    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "benchmarks"))
    import profile_train_step

    assert profile_train_step.main(["--steps", "1", "--warmup", "0", "--profile", "--top", "3", "--data-dir",
                                    str(tmp_path), "--set", "sample_rate=8000", "segment_seconds=0.5"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["config"]["sample_rate"] == 8000 and row["audio_s_per_s"] > 0 and len(row["top_ops"]) == 3
    assert set(row["phases_ms"]) == {"data", "forward+loss", "backward", "clip+adamw"}
