"""FAVOR+ in PyTorch, streamed over sequence chunks: the CPU path (and the algorithm the Triton kernels fuse).

Never holds a (L, m) feature map for a long sequence: keys and queries are processed ``chunk`` rows at a time,
chunk = CHUNK_ELEMENTS / (B·H·m) rows (at least MIN_CHUNK), so the extra memory is O(CHUNK_ELEMENTS + B·H·m·D)
for any L. Works in the math dtype of
``reference.math_dtype`` (float64 for float64 inputs, float32 otherwise).

The m^(-1/2) factor of φ cancels in out = φ_q S / φ_q z, so the state here is kept without it:
  S = Σ_j φ'_k(k_j)ᵀ v_j  (B, H, m, D),  z = Σ_j φ'_k(k_j)  (B, H, m),  φ' = exp(u − h − max) + eps.
The key max is found on the fly: accumulators are rescaled by exp(old max − new max) whenever it grows, and
the eps part (eps·Σ_j v_j, eps·L) is added exactly at the end.
"""

import torch

from trackformer._alloc import new_output

from .reference import math_dtype

CHUNK_ELEMENTS = 1 << 22  # elements of one transient (B, H, chunk, m) feature tile: 16 MiB in float32
MIN_CHUNK = 16


def chunk_rows(b: int, h: int, m: int) -> int:
    """Rows per chunk for B·H heads and m features (bounded by CHUNK_ELEMENTS)."""
    return max(MIN_CHUNK, CHUNK_ELEMENTS // (b * h * m))


def _project(x: torch.Tensor, w: torch.Tensor):
    """u = s·x Wᵀ (B, H, C, m) and h = s²‖x‖²/2 (B, H, C, 1), s = D^(-1/4)."""
    s = x.shape[-1] ** -0.25
    return (s * x) @ w.t(), x.square().sum(-1, keepdim=True) * (s * s / 2.0)


def kv_state(k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, *, eps: float):
    """Key/value summary: k, v (B, H, L, D), w (m, D) in the math dtype → S (B, H, m, D), z (B, H, m), kmax (B, H)."""
    ct = math_dtype(k.dtype)
    b, h, length, d = k.shape
    m = w.shape[0]
    acc = torch.zeros(b, h, m, d, dtype=ct, device=k.device)
    acc_z = torch.zeros(b, h, m, dtype=ct, device=k.device)
    vsum = torch.zeros(b, h, d, dtype=ct, device=k.device)
    kmax = torch.full((b, h), float("-inf"), dtype=ct, device=k.device)
    chunk = chunk_rows(b, h, m)
    for start in range(0, length, chunk):
        kc = k[:, :, start:start + chunk].to(ct)
        vc = v[:, :, start:start + chunk].to(ct)
        u, hk = _project(kc, w)
        new_max = torch.maximum(kmax, u.amax(dim=(-1, -2)))
        alpha = torch.exp(kmax - new_max)  # 0 on the first chunk (kmax = -inf), where acc is 0 anyway
        p = torch.exp(u - hk - new_max[:, :, None, None])
        acc = acc * alpha[:, :, None, None] + p.transpose(-1, -2) @ vc
        acc_z = acc_z * alpha[:, :, None] + p.sum(dim=-2)
        vsum += vc.sum(dim=-2)
        kmax = new_max
    return acc + eps * vsum[:, :, None, :], acc_z + eps * length, kmax


def attend(q: torch.Tensor, w: torch.Tensor, state_s: torch.Tensor, state_z: torch.Tensor, *, eps: float):
    """out_i = φ'_q(q_i) S / φ'_q(q_i)·z: q (B, H, L, D) → out (B, H, L, D) in q's dtype, qmax and den (B, H, L)."""
    ct = math_dtype(q.dtype)
    b, h, length, d = q.shape
    out = new_output((b, h, length, d), dtype=q.dtype, device=q.device)
    qmax = new_output((b, h, length), dtype=ct, device=q.device)
    den = new_output((b, h, length), dtype=ct, device=q.device)
    chunk = chunk_rows(b, h, w.shape[0])
    for start in range(0, length, chunk):
        qc = q[:, :, start:start + chunk].to(ct)
        u, hq = _project(qc, w)
        mx = u.amax(dim=-1, keepdim=True)
        phi = torch.exp(u - hq - mx) + eps
        dc = phi @ state_z.unsqueeze(-1)
        out[:, :, start:start + chunk] = ((phi @ state_s) / dc).to(q.dtype)
        qmax[:, :, start:start + chunk] = mx.squeeze(-1)
        den[:, :, start:start + chunk] = dc.squeeze(-1)
    return out, qmax, den


def backward(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
             out: torch.Tensor, state_s: torch.Tensor, state_z: torch.Tensor, kmax: torch.Tensor,
             qmax: torch.Tensor, den: torch.Tensor, *, eps: float):
    """Gradients (dq, dk, dv) in the input dtype, recomputing φ chunk by chunk from q, k and the saved state.

    With g = dout, num_i = φq_i S, den_i = φq_i·z: dnum_i = g_i/den_i, dden_i = −(g_i·out_i)/den_i,
    dφq_i = S dnum_i + z dden_i, dS = Σ_i φq_iᵀ dnum_i, dz = Σ_i φq_i dden_i, dv_j = dSᵀ φk_j,
    dφk_j = dS v_j + dz; through φ' = e + eps with e_r = exp(s x·w_r − s²‖x‖²/2 − max) (max detached):
    dx = s (dφ∘e) W − s² x Σ_r dφ_r e_r.
    """
    ct = math_dtype(q.dtype)
    s = q.shape[-1] ** -0.25
    dq = new_output(q.shape, dtype=q.dtype, device=q.device)
    dk = new_output(k.shape, dtype=k.dtype, device=k.device)
    dv = new_output(v.shape, dtype=v.dtype, device=v.device)
    d_s = torch.zeros_like(state_s)
    d_z = torch.zeros_like(state_z)
    chunk = chunk_rows(q.shape[0], q.shape[1], w.shape[0])
    for start in range(0, q.shape[2], chunk):
        sl = slice(start, start + chunk)
        qc, gc, oc = q[:, :, sl].to(ct), grad[:, :, sl].to(ct), out[:, :, sl].to(ct)
        u, hq = _project(qc, w)
        e = torch.exp(u - hq - qmax[:, :, sl, None])
        phi = e + eps
        dnum = gc / den[:, :, sl, None]
        dden = -(gc * oc).sum(-1, keepdim=True) / den[:, :, sl, None]
        t = (dnum @ state_s.transpose(-1, -2) + dden * state_z[:, :, None, :]) * e
        dq[:, :, sl] = (s * (t @ w) - (s * s) * qc * t.sum(-1, keepdim=True)).to(q.dtype)
        d_s += phi.transpose(-1, -2) @ dnum
        d_z += (phi * dden).sum(dim=-2)
    for start in range(0, k.shape[2], chunk):
        sl = slice(start, start + chunk)
        kc, vc = k[:, :, sl].to(ct), v[:, :, sl].to(ct)
        u, hk = _project(kc, w)
        e = torch.exp(u - hk - kmax[:, :, None, None])
        dv[:, :, sl] = ((e + eps) @ d_s).to(v.dtype)
        t = (vc @ d_s.transpose(-1, -2) + d_z[:, :, None, :]) * e
        dk[:, :, sl] = (s * (t @ w) - (s * s) * kc * t.sum(-1, keepdim=True)).to(k.dtype)
    return dq, dk, dv
