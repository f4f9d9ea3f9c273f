"""The public FAVOR+ op: validation, backend dispatch and the torch.library registration.

``trackformer::favor_attention`` returns the output and the small state the backward pass needs
(S (B, H, m, D), z (B, H, m), key max (B, H), query row max and denominator (B, H, Lq); no L×m tensor), and
``trackformer::favor_attention_backward`` recomputes the features from q, k and that state. Both are opaque
custom ops with fake (meta) implementations, so ``torch.compile(fullgraph=True)`` keeps each as one node.

Backends: ``triton`` (fused kernels; the default for CUDA tensors), ``chunked`` (streamed PyTorch; the default
for CPU tensors), ``reference`` (the plain formula, differentiated by autograd). The environment variable
``TRACKFORMER_FAVOR_BACKEND`` (triton | chunked | reference | auto) overrides the choice; ``triton`` on CPU
tensors needs ``TRITON_INTERPRET=1``.
"""

import contextlib
import os

import torch

from . import chunked
from .limits import HEAD_DIMS, MAX_FEATURES, check_features, check_head_dim, check_triton_length
from .reference import favor_attention_reference, favor_features_reference, math_dtype

__all__ = ["HEAD_DIMS", "MAX_FEATURES", "favor_attention", "favor_features"]  # the limits re-exported for callers
BACKENDS = ("auto", "triton", "chunked", "reference")
_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _backend(device: torch.device) -> str:
    choice = os.environ.get("TRACKFORMER_FAVOR_BACKEND", "auto") or "auto"
    if choice not in BACKENDS:
        raise ValueError(f"TRACKFORMER_FAVOR_BACKEND must be one of {BACKENDS}, got {choice!r}")
    if choice == "auto":
        return "triton" if device.type == "cuda" else "chunked"
    if choice == "triton" and device.type != "cuda" and os.environ.get("TRITON_INTERPRET", "0") != "1":
        raise ValueError("TRACKFORMER_FAVOR_BACKEND=triton on CPU tensors needs TRITON_INTERPRET=1 "
                         "(the Triton interpreter); use CUDA tensors or the chunked backend")
    return choice


def _check_projection(projection, d: int, device: torch.device) -> None:
    if not isinstance(projection, torch.Tensor):
        raise TypeError(f"projection must be a torch.Tensor of shape (m, D), got {type(projection).__name__}")
    if projection.dim() != 2 or projection.shape[1] != d:
        raise ValueError(f"projection must have shape (m, D={d}), got {tuple(projection.shape)}")
    if projection.dtype not in _FLOATS:
        raise TypeError(f"projection must be float32/float16/bfloat16/float64, got {projection.dtype}")
    check_features(projection.shape[0])
    if projection.device != device:
        raise ValueError(f"projection is on {projection.device} but the inputs are on {device}; move it")
    if projection.requires_grad and torch.is_grad_enabled():
        raise ValueError("projection requires grad, but FAVOR+ random features are fixed (no gradient flows to "
                         "them); pass projection.detach() or register it as a buffer")


def _check_heads_tensor(name: str, t) -> None:
    """t must be a floating (B, H, L, D) tensor."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, H, L, D), got {type(t).__name__}")
    if t.dim() != 4:
        raise ValueError(f"{name} must have shape (batch, heads, length, head_dim), got {tuple(t.shape)}")
    if t.dtype not in _FLOATS:
        raise TypeError(f"{name} must be float32, float16, bfloat16 or float64, got {t.dtype}")


def _check_inputs(q, k, v, projection, eps) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_heads_tensor(name, t)
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape (B, H, Lk, D), got {tuple(k.shape)} and "
                         f"{tuple(v.shape)}")
    b, h, lq, d = q.shape
    if (k.shape[0], k.shape[1], k.shape[3]) != (b, h, d):
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} must agree in batch, heads and head_dim")
    if b < 1 or h < 1 or lq < 1 or k.shape[2] < 1:
        raise ValueError(f"empty input: q {tuple(q.shape)}, k {tuple(k.shape)} (every dimension must be >= 1)")
    check_head_dim(d)
    _check_projection(projection, d, q.device)
    _check_eps(eps)


def _check_eps(eps) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 <= eps < float("inf"):
        raise ValueError(f"eps must be a finite float >= 0, got {eps!r}")


def _rows(x: torch.Tensor) -> torch.Tensor:
    """x itself when its last dimension is contiguous (any batch/head/row strides), else a contiguous copy."""
    return x if x.stride(-1) == 1 else x.contiguous()


def _impl(backend: str, q: torch.Tensor):
    if backend == "triton":
        if q.dtype == torch.float64:
            raise TypeError("the Triton FAVOR+ kernels take float32/float16/bfloat16, got float64; use the "
                            "chunked backend (CPU) for float64")
        from . import triton_bwd, triton_fwd
        return triton_fwd, triton_bwd
    return chunked, chunked


def _on_device(x: torch.Tensor):
    """Makes x's GPU the current one while kernels launch (Triton launches on the current device)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


@torch.library.custom_op("trackformer::favor_attention", mutates_args=())
def _favor_attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor, eps: float,
                        backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                               torch.Tensor, torch.Tensor]:
    fwd, _ = _impl(backend, q)
    w = projection.to(math_dtype(q.dtype)).contiguous()
    with _on_device(q):
        state_s, state_z, kmax, *extra = fwd.kv_state(_rows(k), _rows(v), w, eps=eps)  # extra: backend's own
        out, qmax, den = fwd.attend(_rows(q), w, state_s, state_z, *extra, eps=eps)
    return out, state_s, state_z, kmax, qmax, den


@_favor_attention_op.register_fake
def _(q, k, v, projection, eps, backend):
    b, h, lq, d = q.shape
    m = projection.shape[0]
    ct = math_dtype(q.dtype)
    return (q.new_empty(q.shape), q.new_empty((b, h, m, d), dtype=ct), q.new_empty((b, h, m), dtype=ct),
            q.new_empty((b, h), dtype=ct), q.new_empty((b, h, lq), dtype=ct), q.new_empty((b, h, lq), dtype=ct))


@torch.library.custom_op("trackformer::favor_attention_backward", mutates_args=())
def _favor_attention_backward_op(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 projection: torch.Tensor, out: torch.Tensor, state_s: torch.Tensor,
                                 state_z: torch.Tensor, kmax: torch.Tensor, qmax: torch.Tensor, den: torch.Tensor,
                                 eps: float, backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _, bwd = _impl(backend, q)
    w = projection.to(math_dtype(q.dtype)).contiguous()
    with _on_device(q):
        return bwd.backward(_rows(grad), _rows(q), _rows(k), _rows(v), w, out.contiguous(), state_s.contiguous(),
                            state_z.contiguous(), kmax.contiguous(), qmax.contiguous(), den.contiguous(), eps=eps)


@_favor_attention_backward_op.register_fake
def _(grad, q, k, v, projection, out, state_s, state_z, kmax, qmax, den, eps, backend):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output):
    q, k, v, projection, eps, backend = inputs
    out, state_s, state_z, kmax, qmax, den = output
    ctx.save_for_backward(q, k, v, projection, out, state_s, state_z, kmax, qmax, den)
    ctx.eps, ctx.backend = eps, backend
    ctx.mark_non_differentiable(state_s, state_z, kmax, qmax, den)


def _backward(ctx, grad_out, *_unused_state_grads):
    q, k, v, projection, out, state_s, state_z, kmax, qmax, den = ctx.saved_tensors
    dq, dk, dv = _favor_attention_backward_op(grad_out, q, k, v, projection, out, state_s, state_z, kmax, qmax,
                                              den, ctx.eps, ctx.backend)
    return dq, dk, dv, None, None, None


torch.library.register_autograd("trackformer::favor_attention", _backward, setup_context=_setup_context)


def favor_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor, *,
                    eps: float = 1e-4, causal: bool = False) -> torch.Tensor:
    """Non-causal FAVOR+ attention (DESIGN.md §3), differentiable in q, k and v.

    q (B, H, Lq, D), k and v (B, H, Lk, D), one dtype (float32/float16/bfloat16; float64 off the Triton path)
    and device; D in {16, 32, 64, 128}; projection (m, D) with m a multiple of 16 up to 512, e.g. from
    ``orthogonal_random_features``; it gets no gradient. Returns (B, H, Lq, D) in the input dtype; the math is
    float32 (float64 for float64 inputs). eps > 0 bounds the denominator away from 0; with eps = 0, inputs with
    s²‖x‖²/2 beyond ~40 underflow every feature in float32 and give 0/0, as the formula does at that precision.
    ``causal=True`` (prefix-sum FAVOR+) is not implemented and raises NotImplementedError.
    """
    if causal:
        raise NotImplementedError("causal FAVOR+ attention (prefix sums over keys) is not implemented; "
                                  "trackformer's encoder is non-causal (causal=False)")
    _check_inputs(q, k, v, projection, eps)
    backend = _backend(q.device)
    if backend == "triton":
        check_triton_length(q.shape[2], k.shape[2])
    if backend == "reference":
        return favor_attention_reference(q, k, v, projection, eps=eps)
    return _favor_attention_op(q, k, v, projection, float(eps), backend)[0]


def favor_features(x: torch.Tensor, projection: torch.Tensor, *, is_query: bool, eps: float = 1e-4) -> torch.Tensor:
    """FAVOR+ positive random features φ(x): x (B, H, L, D), projection (m, D) → (B, H, L, m).

    ``is_query=True`` subtracts one max per row, ``False`` one max per (batch, head) as for keys. Returned in
    x's dtype (computed in float32, or float64 for float64 input). Materialises L×m: for research and tests.
    """
    _check_heads_tensor("x", x)
    if not isinstance(is_query, bool):
        raise TypeError(f"is_query must be a bool, got {type(is_query).__name__}")
    _check_projection(projection, x.shape[-1], x.device)
    _check_eps(eps)
    return favor_features_reference(x, projection, is_query=is_query, eps=eps).to(x.dtype)
