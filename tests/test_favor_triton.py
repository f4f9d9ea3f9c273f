"""The fused Triton FAVOR+ kernels (run by the Triton interpreter on the CPU; on CUDA when one is present).

Errors are Frobenius norms ‖ours − ref‖ / ‖ref‖ against the plain formula evaluated in float64 on the same
(already rounded) inputs, for the output and, with a random output gradient g, for dq, dk, dv (there divided by
max(‖ref grad‖, ‖g‖), so gradients that are exactly 0 in theory, as dq, dk at Lk = 1, are held to bound·‖g‖).
Bounds: float32 1e-5 (measured ≤ 5e-7 out, ≤ 6e-8 grads: 3xTF32 dots), float16 2e-3 (measured ≤ 3e-4 out,
≤ 4e-5 grads: output rounding dominates; p ∈ [0, 1] and v enter the Σ p v dot as fp16), bfloat16 1e-2 (bf16
output rounding, ~2e-3, dominates; on a GPU p also enters that dot as bf16, in the interpreter as float32
because its bf16 dot is wrong — the bf16 operand path is covered by the GPU-marked tests only).
"""

import pytest
import torch

from trackformer._alloc import poisoning
from trackformer.kernels import favor_attention, orthogonal_random_features
from trackformer.kernels.favor import triton_fwd
from trackformer.kernels.favor.op import HEAD_DIMS
from trackformer.kernels.favor.reference import favor_attention_reference

pytestmark = [
    pytest.mark.filterwarnings("ignore:Conversion of an array with ndim:DeprecationWarning"),  # interpreter
    pytest.mark.skipif(not torch.cuda.is_available() and not triton_fwd.interpreting(),
                       reason="Triton kernels need CUDA or TRITON_INTERPRET=1 set before import (make test sets it)"),
]
BOUND = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.fixture(autouse=True)
def _triton_backend(monkeypatch):
    monkeypatch.setenv("TRACKFORMER_FAVOR_BACKEND", "triton")


def _check(b, h, lq, lk, d, m, dtype=torch.float32, scale=1.0, eps=1e-4, device="cpu"):
    q = (scale * torch.randn(b, h, lq, d)).to(device, dtype).requires_grad_()
    k, v = ((scale * torch.randn(b, h, lk, d)).to(device, dtype).requires_grad_() for _ in range(2))
    w = orthogonal_random_features(m, d).to(device)
    out = favor_attention(q, k, v, w, eps=eps)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    qd, kd, vd = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref = favor_attention_reference(qd, kd, vd, w.double(), eps=eps)
    ref_grads = torch.autograd.grad(ref, (qd, kd, vd), g.double())
    assert out.shape == (b, h, lq, d) and out.dtype == dtype and all(x.dtype == dtype for x in grads)
    assert torch.isfinite(out).all() and all(torch.isfinite(x).all() for x in grads)
    bound = BOUND[dtype]
    assert rel_err(out, ref) < bound
    g_norm = g.double().norm()
    for a, r in zip(grads, ref_grads):
        assert ((a.double() - r).norm() / torch.maximum(r.norm(), g_norm)).item() < bound
    return q, k, w


@pytest.mark.parametrize("b,h,length,d,m", [
    (1, 1, 1, 16, 48),
    (1, 1, 7, 32, 80),
    (2, 2, 100, 64, 64),
    (1, 1, 517, 16, 48),  # L split over 5 programs, last split shorter
    (1, 1, 1000, 16, 80),
    (1, 1, 40, 128, 256),
    (1, 1, 20, 64, 512),
])
def test_matches_reference_fp32(b, h, length, d, m):
    _check(b, h, length, length, d, m)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs(dtype):
    _check(1, 2, 100, 100, 64, 80, dtype=dtype)


def test_cross_attention_lengths_differ():
    _check(1, 2, 37, 90, 32, 48)


def _check_large_norm(d, scale, device="cpu"):
    """Inputs where exp(s·x·w) overflows float32: the maxima keep every value finite and equal to the formula.

    (At such norms every exp term falls far below eps, in the formula too, so attention becomes uniform.)
    """
    q, k, w = _check(1, 1, 150, 150, d, 64, scale=scale, device=device)
    assert torch.isinf(torch.exp(d ** -0.25 * torch.cat([q, k], dim=2).detach() @ w.t())).any()


@pytest.mark.parametrize("scale", [10.0, 20.0])
def test_large_norm_inputs_stay_finite(scale):
    _check_large_norm(32, scale)


def _check_strided(d, device="cpu"):
    """q, k, v as views of a fused (B, L, 3, H, D) projection (read in place through their strides), a strided
    output gradient, and a k whose last dimension is strided (copied first)."""
    x = torch.randn(2, 50, 3, 2, d, device=device, requires_grad=True)  # (B, L, qkv, H, D)
    q, k, v = x.permute(2, 0, 3, 1, 4).unbind(0)
    k_t = torch.randn(2, 2, d, 50, device=device).transpose(-1, -2).requires_grad_()  # stride(-1) = 50
    w = orthogonal_random_features(32, d).to(device)
    assert not q.is_contiguous() and q.stride(-1) == 1 and k_t.stride(-1) != 1
    for key in (k, k_t):
        out = favor_attention(q, key, v, w)
        g = torch.randn(2, 50, 2, d, device=device).transpose(1, 2)  # (B, H, L, D) view of a (B, L, H, D) tensor
        grads = torch.autograd.grad(out, (x, key) if key is k_t else (x,), g)
        xd = x.detach().double().requires_grad_()
        qd, kd, vd = xd.permute(2, 0, 3, 1, 4).unbind(0)
        kd_t = k_t.detach().double().requires_grad_()
        ref = favor_attention_reference(qd, kd_t if key is k_t else kd, vd, w.double())
        ref_grads = torch.autograd.grad(ref, (xd, kd_t) if key is k_t else (xd,), g.double())
        assert rel_err(out, ref) < 1e-5
        for a, r in zip(grads, ref_grads):
            assert rel_err(a, r) < 1e-5


def test_strided_inputs_and_gradients():
    _check_strided(32)


def test_outputs_are_poisoned_before_the_kernels_run(monkeypatch):
    """Every kernel output comes from new_output and is NaN before launch; none is left unwritten."""
    assert poisoning()
    allocated = []

    def recording_new_output(shape, *, dtype, device):
        t = triton_fwd.new_output.__wrapped__(shape, dtype=dtype, device=device)
        allocated.append((t, bool(torch.isnan(t).all())))
        return t

    recording_new_output.__wrapped__ = triton_fwd.new_output
    monkeypatch.setattr(triton_fwd, "new_output", recording_new_output)
    q, k, v = (torch.randn(1, 1, 70, 16) for _ in range(3))
    out = favor_attention(q, k, v, orthogonal_random_features(48, 16))
    assert len(allocated) == 13  # 5 partials, S, z, key max, 2 block sums, out, row max, denominator
    assert all(was_nan for _, was_nan in allocated)
    assert all(torch.isfinite(t).all() for t, _ in allocated)
    assert any(t is out or t.data_ptr() == out.data_ptr() for t, _ in allocated)


def test_autotune_key_has_a_length_bucket_and_fp32_times_only_unspilled_tiles():
    """Each power-of-two class of L is tuned on its own (not the first L seen for every L); fp32 inputs only
    time the 32-row candidates, which compile for sm_90 without register spills."""
    from trackformer.kernels.favor import triton_bwd

    for kernel in (triton_fwd._attend_kernel, triton_bwd._dq_kernel, triton_bwd._dkv_kernel):
        assert "L_BUCKET" in kernel.keys
    assert [triton_fwd.length_bucket(n) for n in (1, 517, 1024, 5168)] == [1, 1024, 1024, 8192]
    configs = triton_fwd.row_configs(interpreter=False)
    assert 1 < len(configs) <= 3
    assert [c.kwargs["BLOCK_L"] for c in triton_fwd.keep_configs(configs, "tf32x3")] == [32]
    assert triton_fwd.keep_configs(configs, "tf32") == configs


@pytest.mark.parametrize("m,attend", [(80, "_attend_kernel"), (48, "_attend_staged_kernel")])
def test_forward_and_backward_take_six_launches_and_no_torch_reductions(monkeypatch, m, attend):
    """kv partial, kv reduce, attend (W, S staged per program when m fits, else streamed per tile); dS partial,
    dq (+ dS reduce), dk/dv: the split reductions live in the kernels (no torch.sum launches between them)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from trackformer.kernels.favor import triton_bwd

    launches = []

    class Counting:
        def __init__(self, name, kernel):
            self.name, self.kernel = name, kernel

        def __getitem__(self, grid):
            launches.append(self.name)
            return self.kernel[grid]

    for module in (triton_fwd, triton_bwd):
        for name in dir(module):
            if name.endswith("_kernel"):
                monkeypatch.setattr(module, name, Counting(name, getattr(module, name)))

    class Reductions(TorchDispatchMode):
        seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten.sum, torch.ops.aten.mean):
                self.seen.append(func)
            return func(*args, **(kwargs or {}))

    q, k, v = (torch.randn(1, 2, 70, 16, requires_grad=True) for _ in range(3))
    w = orthogonal_random_features(m, 16)
    with Reductions() as mode:
        out = favor_attention(q, k, v, w)
        torch.autograd.grad(out, (q, k, v), torch.ones_like(out))
    assert launches == ["_kv_partial_kernel", "_kv_reduce_kernel", attend, "_dstate_kernel", "_dq_kernel",
                        "_dkv_kernel"]
    assert mode.seen == []


def test_float64_is_rejected_on_triton():
    q = torch.randn(1, 1, 4, 16, dtype=torch.float64)
    with pytest.raises(TypeError, match="float64"):
        favor_attention(q, q, q, orthogonal_random_features(16, 16))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("length", [517, 5168])
def test_cuda_matches_reference(dtype, length):
    _check(2, 4, length, length, 64, 256, dtype=dtype, device="cuda")
    _check(1, 2, length, 33, 64, 80, dtype=dtype, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("d", HEAD_DIMS)
def test_cuda_shapes_per_head_dim(d, dtype):
    """The interpreter's shape cases on the GPU for every head dim: one row, odd lengths, batch 1, m from 16 to
    512 (one and several feature blocks in the state kernels), cross-attention lengths."""
    for b, h, lq, lk, m in ((1, 1, 1, 1, 16), (1, 1, 7, 7, 80), (2, 3, 517, 517, 256), (1, 2, 37, 90, 48),
                            (1, 1, 1000, 1000, 512)):
        _check(b, h, lq, lk, d, m, dtype=dtype, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("d", HEAD_DIMS)
def test_cuda_strided_and_large_norm_per_head_dim(d):
    _check_strided(d, device="cuda")
    for scale in (10.0, 20.0):
        _check_large_norm(d, scale, device="cuda")
