"""Plain PyTorch FAVOR+ (DESIGN.md §3): the formula the fused kernels are tested against.

Same semantics as performer-pytorch 1.1.4 ``softmax_kernel`` + ``linear_attention`` given the same projection:
s = D^(-1/4); u_r(x) = s·x·w_r; h(x) = s²‖x‖²/2;
φ_q(q_i) = m^(-1/2)(exp(u(q_i) − h(q_i) − max_r u_r(q_i)) + eps)     (one max per query row)
φ_k(k_j) = m^(-1/2)(exp(u(k_j) − h(k_j) − max_{j,r} u_r(k_j)) + eps)  (one max per batch and head)
out_i = Σ_j (φ_q(q_i)·φ_k(k_j)) v_j / Σ_j φ_q(q_i)·φ_k(k_j); the max terms are detached.

Computes in float64 for float64 inputs and in float32 otherwise (half inputs are upcast, the result is cast
back). Materialises the (B, H, L, m) feature maps: use it for tests and small shapes only.
"""

import torch


def math_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def favor_features_reference(x: torch.Tensor, projection: torch.Tensor, *, is_query: bool,
                             eps: float = 1e-4) -> torch.Tensor:
    """Positive random features φ(x): x (B, H, L, D), projection (m, D) → (B, H, L, m) in x's math dtype."""
    ct = math_dtype(x.dtype)
    x = x.to(ct)
    w = projection.to(device=x.device, dtype=ct)
    d, m = x.shape[-1], w.shape[0]
    s = d ** -0.25
    u = torch.einsum("...ld,md->...lm", s * x, w)
    h = x.square().sum(-1, keepdim=True) * (s * s / 2.0)
    if is_query:
        mx = u.amax(dim=-1, keepdim=True).detach()
    else:
        mx = u.amax(dim=(-1, -2), keepdim=True).detach()
    return m ** -0.5 * (torch.exp(u - h - mx) + eps)


def favor_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor, *,
                              eps: float = 1e-4) -> torch.Tensor:
    """Non-causal FAVOR+ attention: q (B, H, Lq, D), k, v (B, H, Lk, D), projection (m, D) → (B, H, Lq, D)."""
    qf = favor_features_reference(q, projection, is_query=True, eps=eps)
    kf = favor_features_reference(k, projection, is_query=False, eps=eps)
    vf = v.to(qf.dtype)
    den = torch.einsum("...lm,...m->...l", qf, kf.sum(dim=-2))
    context = torch.einsum("...lm,...ld->...md", kf, vf)
    out = torch.einsum("...lm,...md->...ld", qf, context) / den.unsqueeze(-1)
    return out.to(q.dtype)
