"""MixIT: the exact search and losses against the brute-force remix oracle, validation, mixture consistency."""

import math

import pytest
import torch

from trackformer.mixit import best_assignment, mixit_bruteforce, mixit_loss, mixture_consistency
from trackformer.mixit.search import assignment_digits

CASES = [(2, 2), (3, 2), (3, 3), (4, 2), (4, 3), (8, 2), (8, 3), (12, 2)]


def _inputs(b, m, n, t, channels=None, dtype=torch.float32, requires_grad=False):
    """Estimates that roughly split each mixture into parts, so assignments are far from ties."""
    extra = () if channels is None else (channels,)
    x = torch.randn(b, n, *extra, t, dtype=torch.float64)
    owner = torch.randint(0, n, (b, m))
    est = x[torch.arange(b)[:, None], owner] * torch.rand(b, m, *([1] * (len(extra) + 1)), dtype=torch.float64)
    est = est + 0.3 * torch.randn_like(est)
    return est.to(dtype).requires_grad_(requires_grad), x.to(dtype)


@pytest.mark.parametrize("m,n", CASES)
@pytest.mark.parametrize("channels", [None, 2])
def test_matches_bruteforce(m, n, channels):
    est, mix = _inputs(3, m, n, 97, channels)
    assignment, loss = best_assignment(est, mix)
    ref_loss, ref_assignment = mixit_bruteforce(est, mix)
    assert assignment.dtype == torch.int64 and assignment.shape == (3, m)
    assert torch.equal(assignment, ref_assignment)
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-4)
    torch.testing.assert_close(mixit_loss(est, mix, reduction="none"), ref_loss, rtol=0, atol=1e-5)


def test_m12_n3_batch1_matches_bruteforce():
    est, mix = _inputs(1, 12, 3, 9, dtype=torch.float64)
    assignment, loss = best_assignment(est, mix)
    ref_loss, ref_assignment = mixit_bruteforce(est, mix)
    assert torch.equal(assignment, ref_assignment)
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-9)


@pytest.mark.parametrize("snr_max", [30.0, 10.0, None])
def test_snr_max(snr_max):
    est, mix = _inputs(4, 6, 2, 64, 2)
    est[0, 1:] = 0  # one example nearly perfect for some assignment
    mix[0, 0], mix[0, 1] = est[0, 0] * 0.5, est[0, 0] * 0.5
    assignment, loss = best_assignment(est, mix, snr_max=snr_max)
    ref_loss, ref_assignment = mixit_bruteforce(est, mix, snr_max=snr_max)
    assert torch.equal(assignment, ref_assignment)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-4, atol=1e-3)


def test_gradients_match_bruteforce():
    est, mix = _inputs(3, 5, 2, 41, 2, dtype=torch.float64, requires_grad=True)
    mix.requires_grad_(True)
    mixit_loss(est, mix).backward()
    ours = est.grad.clone(), mix.grad.clone()
    est.grad = mix.grad = None
    mixit_bruteforce(est, mix)[0].mean().backward()
    torch.testing.assert_close(ours[0], est.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours[1], mix.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss_type", ["neg_snr", "neg_sisnr"])
def test_loss_types_match_bruteforce(loss_type):
    est, mix = _inputs(3, 4, 2, 57, dtype=torch.float64, requires_grad=True)
    mix.requires_grad_(True)
    ours = mixit_loss(est, mix, loss_type=loss_type, reduction="none")
    ref, _ = mixit_bruteforce(est, mix, loss_type=loss_type)
    torch.testing.assert_close(ours, ref)
    weights = torch.rand(3, dtype=torch.float64)
    for got, want in zip(torch.autograd.grad((ours * weights).sum(), (est, mix)),
                         torch.autograd.grad((ref * weights).sum(), (est, mix))):
        torch.testing.assert_close(got, want)


def test_neg_snr_is_thresholded_minus_mixture_power():
    est, mix = _inputs(2, 4, 2, 50, dtype=torch.float64)
    diff = mixit_loss(est, mix, reduction="none") - mixit_loss(est, mix, loss_type="neg_snr", reduction="none")
    torch.testing.assert_close(diff, (10 * torch.log10(mix.pow(2).sum(-1) + 1e-8)).mean(-1))


def test_silent_estimates_and_mixtures():
    est, mix = _inputs(3, 4, 2, 33, 2)
    est[0] = 0                 # all estimates silent: every assignment ties → index 0
    mix[1, 1] = 0              # one silent mixture
    est[2, :2] = 0             # some silent estimates
    assignment, loss = best_assignment(est, mix)
    ref_loss, ref_assignment = mixit_bruteforce(est, mix)
    assert torch.equal(assignment, ref_assignment)
    assert torch.equal(assignment[0], torch.zeros(4, dtype=torch.int64))
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-4)
    # everything silent: loss = 10·log10(1e-8) = −80 dB, finite gradient
    zeros = torch.zeros(1, 3, 10, requires_grad=True)
    value = mixit_loss(zeros, torch.zeros(1, 2, 10))
    assert value.item() == pytest.approx(-80.0)
    value.backward()
    assert torch.isfinite(zeros.grad).all()


def test_ties_break_to_lowest_index():
    s = torch.randn(1, 1, 50)
    est, mix = torch.cat([s, s], 1), torch.cat([s, s], 1)
    # k = 1 (estimate 0 → mixture 1, estimate 1 → mixture 0) and k = 2 are both perfect: the lowest wins
    assignment, _ = best_assignment(est, mix)
    assert assignment.tolist() == [[1, 0]]
    # random duplicated estimates: same as the brute force's first minimum
    est, mix = _inputs(4, 3, 2, 40)
    est = torch.cat([est, est], 1)
    assignment, _ = best_assignment(est, mix)
    assert torch.equal(assignment, mixit_bruteforce(est, mix)[1])
    assert torch.equal(assignment, best_assignment(est, mix)[0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    """fp16/bf16 inputs accumulate in float32: same assignment as float64 on the rounded values, loss within
    1e-3 dB, float32 outputs and gradients in the input dtype."""
    est, mix = _inputs(3, 6, 2, 1001, 2, dtype=dtype, requires_grad=True)
    assignment, loss = best_assignment(est, mix)
    ref_loss, ref_assignment = mixit_bruteforce(est.detach().double(), mix.double())
    assert loss.dtype == torch.float32
    assert torch.equal(assignment, ref_assignment)
    torch.testing.assert_close(loss.double(), ref_loss, rtol=0, atol=1e-3)
    value = mixit_loss(est, mix, reduction="none")
    assert value.dtype == torch.float32
    torch.testing.assert_close(value.double(), ref_loss, rtol=0, atol=1e-3)
    value.sum().backward()
    assert est.grad.dtype == dtype and torch.isfinite(est.grad.float()).all()


def test_autocast_does_not_lower_precision():
    est, mix = _inputs(2, 4, 2, 1000, requires_grad=True)
    plain = mixit_loss(est, mix, reduction="none")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = mixit_loss(est, mix, reduction="none")
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, plain)


def test_m16_runs():
    est, mix = _inputs(2, 16, 2, 64)
    assignment, loss = best_assignment(est, mix)
    # the loss of the returned assignment, by remixing, equals the reported loss and beats single flips of it
    def remix_loss(a):
        onehot = torch.nn.functional.one_hot(a, 2).transpose(1, 2).double()
        r = onehot @ est.double()
        x = mix.double()
        e = x.pow(2).sum(-1)
        return (10 * torch.log10((x - r).pow(2).sum(-1) + 1e-3 * e + 1e-8)).mean(-1)
    torch.testing.assert_close(loss.double(), remix_loss(assignment), rtol=0, atol=1e-4)
    for m in range(16):
        flipped = assignment.clone()
        flipped[:, m] = 1 - flipped[:, m]
        assert (remix_loss(flipped) >= remix_loss(assignment) - 1e-9).all()


def test_return_assignment_and_reductions():
    est, mix = _inputs(3, 4, 2, 30, 2)
    loss, assignment, remixed = mixit_loss(est, mix, return_assignment=True)
    assert remixed.shape == mix.shape and assignment.shape == (3, 4)
    onehot = torch.nn.functional.one_hot(assignment, 2).float()                 # (B, M, N)
    torch.testing.assert_close(remixed, torch.einsum("bmn,bmct->bnct", onehot, est))
    per = mixit_loss(est, mix, reduction="none")
    torch.testing.assert_close(loss, per.mean())
    torch.testing.assert_close(mixit_loss(est, mix, reduction="sum"), per.sum())


def test_assignment_digits_encoding():
    digits = assignment_digits(torch.tensor([0, 1, 5, 26]), 3, 3)
    assert digits.tolist() == [[0, 0, 0], [1, 0, 0], [2, 1, 0], [2, 2, 2]]


@pytest.mark.parametrize("est_shape,mix_shape,match", [
    ((2, 4, 10), (3, 2, 10), "batch"),
    ((2, 4, 10), (2, 2, 11), "length"),
    ((2, 4, 2, 10), (2, 2, 1, 10), "channels"),
    ((2, 4, 2, 10), (2, 2, 10), "both"),
    ((2, 4), (2, 2), r"\(B, K, T\)"),
    ((2, 2, 10), (2, 3, 10), "M = 2 < N = 3"),
    ((2, 1, 10), (2, 1, 10), "N >= 2"),
    ((2, 17, 10), (2, 2, 10), "M = 16"),
    ((2, 4, 0), (2, 2, 0), "empty"),
    ((1, 15, 10), (1, 5, 10), "assignments"),
])
def test_shape_errors(est_shape, mix_shape, match):
    with pytest.raises(ValueError, match=match):
        best_assignment(torch.randn(est_shape), torch.randn(mix_shape))
    with pytest.raises(ValueError, match=match):
        mixit_loss(torch.randn(est_shape), torch.randn(mix_shape))


def test_type_and_value_errors():
    est, mix = _inputs(2, 4, 2, 10)
    with pytest.raises(TypeError, match="floating"):
        best_assignment(est.to(torch.int32), mix)
    with pytest.raises(TypeError, match="floating"):
        mixit_loss(est, mix.to(torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        best_assignment(est.numpy(), mix)
    with pytest.raises(TypeError, match="snr_max"):
        mixit_loss(est, mix, snr_max="30")
    with pytest.raises(ValueError, match="infinite threshold"):
        best_assignment(est, mix, snr_max=-4000.0)
    with pytest.raises(ValueError, match="reduction"):
        mixit_loss(est, mix, reduction="max")
    with pytest.raises(ValueError, match="loss_type"):
        mixit_loss(est, mix, loss_type="sdr")
    for bad in (math.nan, math.inf):
        poisoned = est.clone()
        poisoned[1, 2, 3] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            best_assignment(poisoned, mix)
        with pytest.raises(ValueError, match="NaN or inf"):
            mixit_loss(est, torch.where(mix > 1, bad, mix))
    with pytest.raises(ValueError, match="NaN or inf"):          # finite, but ‖x‖² overflows float32
        best_assignment(est, mix * 1e20)


def test_mixed_devices_error():
    est, mix = _inputs(2, 4, 2, 10)
    with pytest.raises(ValueError, match="meta"):
        best_assignment(est, mix.to("meta"))


@pytest.mark.parametrize("weighting", ["uniform", "power"])
@pytest.mark.parametrize("shape", [(2, 4, 33), (1, 3, 2, 20)])
def test_mixture_consistency(weighting, shape):
    est = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    mixture = torch.randn(shape[:1] + shape[2:], dtype=torch.float64)
    out = mixture_consistency(est, mixture, weighting)
    assert out.shape == est.shape
    torch.testing.assert_close(out.sum(1), mixture)
    residual = (mixture - est.sum(1)).unsqueeze(1)
    if weighting == "uniform":
        expected = est + residual / shape[1]
    else:
        power = est.pow(2).sum(-1, keepdim=True)
        expected = est + power / power.sum(1, keepdim=True) * residual
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    # silent estimates under power weighting fall back to uniform
    silent = mixture_consistency(torch.zeros(shape), mixture.float(), "power")
    torch.testing.assert_close(silent, mixture.float().unsqueeze(1).expand(shape) / shape[1])


def test_mixture_consistency_errors():
    with pytest.raises(ValueError, match="weighting"):
        mixture_consistency(torch.randn(2, 3, 10), torch.randn(2, 10), "energy")
    with pytest.raises(ValueError, match="mixture"):
        mixture_consistency(torch.randn(2, 3, 10), torch.randn(2, 11))
    with pytest.raises(TypeError, match="floating"):
        mixture_consistency(torch.randn(2, 3, 10), torch.ones(2, 10, dtype=torch.int64))
