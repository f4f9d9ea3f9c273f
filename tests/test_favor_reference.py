"""FAVOR+ math: the reference formula, the chunked CPU path against it, random features, unbiasedness.

Errors are relative Frobenius norms ‖ours − ref‖ / ‖ref‖ against the reference evaluated in float64 on the
same (already rounded) inputs.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from trackformer.kernels import favor_attention, favor_features, orthogonal_random_features
from trackformer.kernels.favor import chunked
from trackformer.kernels.favor.reference import favor_attention_reference


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _qkv(shape, dtype=torch.float32, scale=1.0, requires_grad=False):
    return [(scale * torch.randn(shape)).to(dtype).requires_grad_(requires_grad) for _ in range(3)]


def _ref_with_grads(q, k, v, w, g):
    qd, kd, vd = (x.detach().double().requires_grad_() for x in (q, k, v))
    out = favor_attention_reference(qd, kd, vd, w.double())
    return out, torch.autograd.grad(out, (qd, kd, vd), g.double())


@pytest.fixture(autouse=True)
def _chunked_backend(monkeypatch):
    monkeypatch.setenv("TRACKFORMER_FAVOR_BACKEND", "chunked")


@pytest.mark.parametrize("length", [1, 7, 100, 517, 1000])
@pytest.mark.parametrize("b,h,d,m", [(1, 1, 16, 48), (2, 3, 64, 80), (1, 2, 32, 256)])
def test_chunked_matches_reference_fp32(length, b, h, d, m, monkeypatch):
    monkeypatch.setattr(chunked, "CHUNK_ELEMENTS", 64 * b * h * m)  # chunks of 64 rows, the last one partial
    q, k, v = _qkv((b, h, length, d), requires_grad=True)
    w = orthogonal_random_features(m, d)
    out = favor_attention(q, k, v, w)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    ref, ref_grads = _ref_with_grads(q, k, v, w, g)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert rel_err(out, ref) < 1e-5
    assert rel_err(grads[2], ref_grads[2]) < 1e-5
    if length == 1:  # out = v exactly: the true dq, dk are 0 (the reference's are rounding noise)
        assert grads[0].abs().max() < 1e-5 and grads[1].abs().max() < 1e-5
    else:
        assert rel_err(grads[0], ref_grads[0]) < 1e-5
        assert rel_err(grads[1], ref_grads[1]) < 1e-5


def test_chunked_cross_attention_lengths_differ():
    q = torch.randn(2, 2, 37, 32, requires_grad=True)
    k, v = (torch.randn(2, 2, 150, 32, requires_grad=True) for _ in range(2))
    w = orthogonal_random_features(64, 32)
    out = favor_attention(q, k, v, w)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    ref, ref_grads = _ref_with_grads(q, k, v, w, g)
    assert out.shape == (2, 2, 37, 32)
    assert rel_err(out, ref) < 1e-5
    for a, r in zip(grads, ref_grads):
        assert rel_err(a, r) < 1e-5


@pytest.mark.parametrize("dtype,bound", [(torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
def test_chunked_half_inputs(dtype, bound):
    """Half inputs, float32 math: only the output rounding differs from the float64 reference."""
    q, k, v = _qkv((2, 2, 300, 64), dtype=dtype, requires_grad=True)
    w = orthogonal_random_features(128, 64)
    out = favor_attention(q, k, v, w)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    ref, ref_grads = _ref_with_grads(q, k, v, w, g)
    assert out.dtype == dtype and all(x.dtype == dtype for x in grads)
    assert rel_err(out, ref) < bound
    for a, r in zip(grads, ref_grads):
        assert rel_err(a, r) < bound


def test_gradcheck_float64():
    q, k, v = (torch.randn(1, 2, 5, 16, dtype=torch.float64, requires_grad=True) for _ in range(3))
    w = orthogonal_random_features(16, 16).double()
    # eps = 0: the detached maxima then cancel in the ratio, so the analytic and numerical gradients agree
    assert torch.autograd.gradcheck(lambda q, k, v: favor_attention(q, k, v, w, eps=0.0), (q, k, v), fast_mode=True)


def test_large_norm_inputs_stay_finite():
    """Norms where exp(s·x·w) overflows float32: the max subtraction keeps every value finite and exact."""
    q, k, v = _qkv((1, 2, 200, 32), scale=20.0, requires_grad=True)
    w = orthogonal_random_features(64, 32)
    assert torch.isinf(torch.exp(32 ** -0.25 * (k @ w.t()))).any()  # a naive feature map overflows
    out = favor_attention(q, k, v, w)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    ref, ref_grads = _ref_with_grads(q, k, v, w, g)
    assert torch.isfinite(out).all() and all(torch.isfinite(x).all() for x in grads)
    assert rel_err(out, ref) < 1e-5
    assert rel_err(grads[2], ref_grads[2]) < 1e-5


def test_features_shape_positivity_and_max_semantics():
    x = torch.randn(2, 3, 11, 16)
    w = orthogonal_random_features(48, 16)
    fq = favor_features(x, w, is_query=True)
    fk = favor_features(x, w, is_query=False)
    assert fq.shape == fk.shape == (2, 3, 11, 48) and (fq > 0).all() and (fk > 0).all()
    # one max per query row: every row reaches exp(-h); one max per (batch, head) for keys: only one row does
    u = 16 ** -0.25 * x @ w.t()
    h = x.square().sum(-1) * 16 ** -0.5 / 2
    row_peak = (fq.amax(-1) * math.sqrt(48) - 1e-4) * torch.exp(h)
    torch.testing.assert_close(row_peak, torch.ones_like(row_peak), rtol=1e-4, atol=0)
    key_shift = u.amax(dim=(-1, -2), keepdim=True) - u.amax(-1, keepdim=True)
    torch.testing.assert_close(fk, (torch.exp(u - h[..., None] - key_shift - u.amax(-1, keepdim=True)) + 1e-4)
                               / math.sqrt(48), rtol=1e-5, atol=0)
    assert favor_features(x.to(torch.bfloat16), w, is_query=True).dtype == torch.bfloat16


def test_orthogonal_blocks_and_norms():
    d, m = 32, 80  # two full blocks and a partial one of 16 rows
    w = orthogonal_random_features(m, d, generator=torch.Generator().manual_seed(1), scaling=1)
    assert w.shape == (m, d) and w.dtype == torch.float32
    torch.testing.assert_close(w.norm(dim=1), torch.full((m,), math.sqrt(d)), rtol=1e-5, atol=0)
    for start in range(0, m, d):
        block = w[start:start + d]
        torch.testing.assert_close(block @ block.t(), d * torch.eye(block.shape[0]), atol=1e-4, rtol=0)
    # rows of different blocks are not orthogonal (independent draws)
    assert (w[:d] @ w[d:2 * d].t()).abs().max() > 1.0


def test_chi_norms_statistics():
    """scaling=0: squared row norms ~ chi²(d): mean d, variance 2d (tolerances ≈ 6 standard errors)."""
    d, m = 64, 4096
    w = orthogonal_random_features(m, d, generator=torch.Generator().manual_seed(2), scaling=0)
    sq = w.double().square().sum(dim=1)
    assert abs(sq.mean().item() - d) < 6 * math.sqrt(2 * d / m)
    assert abs(sq.var().item() - 2 * d) < 6 * 2 * d * math.sqrt(2 / m) + 1.0
    directions = w / w.norm(dim=1, keepdim=True)
    gram = directions[:d] @ directions[:d].t()
    torch.testing.assert_close(gram, torch.eye(d), atol=1e-5, rtol=0)


def test_generator_reproducible_and_errors():
    a = orthogonal_random_features(48, 16, generator=torch.Generator().manual_seed(5))
    b = orthogonal_random_features(48, 16, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="scaling"):
        orthogonal_random_features(16, 16, scaling=2)
    with pytest.raises(ValueError, match="m"):
        orthogonal_random_features(0, 16)
    with pytest.raises(TypeError):
        orthogonal_random_features(16.0, 16)


def test_kernel_estimate_is_unbiased():
    """E_W[φ_q(q)·φ_k(k)]·exp(max_q + max_k) = exp(q·k/√D) for orthogonal features with chi(D) norms.

    256 independent draws of m = 64 features, 32 × 32 pairs, ‖s·x‖ ≈ 0.5: every pair's mean is within 6
    standard errors of the exact kernel (measured max |z| ≈ 3.4; without the Haar sign fix it was ≈ 40 at
    4096 draws), and the mean matrix is within 6 % (measured 2.8 %).
    """
    d, m, draws = 16, 64, 256
    q, k = (0.5 * torch.randn(1, 1, 32, d, dtype=torch.float64) for _ in range(2))
    exact = torch.exp(q @ k.transpose(-1, -2) / math.sqrt(d))
    gen = torch.Generator().manual_seed(3)
    estimates = []
    for _ in range(draws):
        w = orthogonal_random_features(m, d, generator=gen).double()
        uq, uk = d ** -0.25 * q @ w.t(), d ** -0.25 * k @ w.t()
        fq = favor_features(q, w, is_query=True, eps=0.0)
        fk = favor_features(k, w, is_query=False, eps=0.0)
        estimates.append(fq @ fk.transpose(-1, -2) * torch.exp(uq.amax(-1, keepdim=True) + uk.amax()))
    est = torch.stack(estimates)
    z = (est.mean(0) - exact) / (est.std(0) / math.sqrt(draws))
    assert z.abs().max() < 6.0
    assert rel_err(est.mean(0), exact) < 0.06


def test_orthogonal_blocks_are_haar_signed():
    """The first entry of a raw LAPACK Q is always negative; after the sign fix it is positive half the time."""
    gen = torch.Generator().manual_seed(4)
    positive = sum(bool(orthogonal_random_features(8, 8, generator=gen)[0, 0] > 0) for _ in range(400))
    assert 140 < positive < 260  # Binomial(400, 1/2): mean 200, sd 10


def test_attention_approaches_softmax_with_more_features():
    """Small-norm inputs: FAVOR+ ≈ softmax(q kᵀ/√D) v, closer with more features and when averaged over draws.

    Measured on the part of the output that attention changes (out − mean of v), 16 draws each: mean single-draw
    error ≈ 1.10 at m = 64 and ≈ 0.42 at m = 512; the average of the 16 m = 512 outputs ≈ 0.12.
    """
    d = 16
    q, k, v = (torch.randn(1, 2, 64, d, dtype=torch.float64) for _ in range(3))
    q, k = 0.5 * q, 0.5 * k
    exact = F.scaled_dot_product_attention(q, k, v)
    centre = v.mean(dim=-2, keepdim=True)
    gen = torch.Generator().manual_seed(3)
    mean_err, outs = {}, {}
    for m in (64, 512):
        outs[m] = [favor_attention(q, k, v, orthogonal_random_features(m, d, generator=gen).double())
                   for _ in range(16)]
        mean_err[m] = sum(rel_err(o - centre, exact - centre) for o in outs[m]) / 16
    assert mean_err[512] < 0.6 and mean_err[512] < 0.6 * mean_err[64]
    averaged = rel_err(torch.stack(outs[512]).mean(0) - centre, exact - centre)
    assert averaged < 0.2 and averaged < 0.5 * mean_err[512]


def test_matches_performer_pytorch_fast_attention():
    pp = pytest.importorskip("performer_pytorch")
    d, m = 64, 256
    fast = pp.FastAttention(dim_heads=d, nb_features=m)
    w = orthogonal_random_features(m, d)
    fast.projection_matrix.copy_(w)
    q, k, v = _qkv((2, 4, 173, d))
    expected = fast(q.double(), k.double(), v.double())
    assert rel_err(favor_attention(q, k, v, w), expected) < 1e-5
    for is_query, x in ((True, q), (False, k)):
        theirs = pp.performer_pytorch.softmax_kernel(x.double(), projection_matrix=w.double(), is_query=is_query)
        assert rel_err(favor_features(x.double(), w, is_query=is_query), theirs) < 1e-12
