"""FAVOR+ in PyTorch, streamed over sequence chunks: the CPU path (and the algorithm the Triton kernels fuse).

Never holds a (L, m) feature map for a long sequence: keys and queries are processed ``chunk`` rows at a time,
chunk = CHUNK_ELEMENTS / (B·H·m) rows (at least MIN_CHUNK), so the extra memory is O(CHUNK_ELEMENTS + B·H·m·D)
for any L. Works in the math dtype of
``reference.math_dtype`` (float64 for float64 inputs, float32 otherwise).

The m^(-1/2) factor of φ cancels in out = φ_q S / φ_q z, so the state here is kept without it:
  S = Σ_j φ'_k(k_j)ᵀ v_j  (B, H, m, D),  z = Σ_j φ'_k(k_j)  (B, H, m),  φ' = exp(u − h − max) + eps.
The key max is found on the fly: accumulators are rescaled by exp(old max − new max) whenever it grows, and
the eps part (eps·Σ_j v_j, eps·L) is added exactly at the end. To keep the passes over (chunk, m) tensors few,
z rides along S as an extra column ([S | z], (B, H, m, D + 1)), a column of ones rides along W (so one matmul
gives t W and Σ_r t_r), and eps terms are added to the small products instead of to φ.
"""

import torch

from trackformer._alloc import new_output

from .reference import math_dtype

CHUNK_ELEMENTS = 1 << 22  # elements of one transient (B, H, chunk, m) feature tile: 16 MiB in float32
MIN_CHUNK = 16


def chunk_rows(b: int, h: int, m: int) -> int:
    """Rows per chunk for B·H heads and m features (bounded by CHUNK_ELEMENTS)."""
    return max(MIN_CHUNK, CHUNK_ELEMENTS // (b * h * m))


def _project(x: torch.Tensor, ws_t: torch.Tensor):
    """u = s·x Wᵀ (B, H, C, m) (a fresh tensor, free to overwrite) and h = s²‖x‖²/2 (B, H, C, 1), s = D^(-1/4),
    for ws_t = (s·W)ᵀ (D, m)."""
    s = x.shape[-1] ** -0.25
    return x @ ws_t, x.square().sum(-1, keepdim=True) * (s * s / 2.0)


def _scaled_t(w: torch.Tensor) -> torch.Tensor:
    """(s·W)ᵀ (D, m), contiguous: the projection every chunk multiplies by."""
    return (w * w.shape[-1] ** -0.25).t().contiguous()


def _with_ones(x: torch.Tensor) -> torch.Tensor:
    """x (..., n, d) → [x | 1] (..., n, d + 1)."""
    return torch.cat([x, x.new_ones(x.shape[:-1] + (1,))], dim=-1)


def _input_grad(x: torch.Tensor, t: torch.Tensor, w1: torch.Tensor) -> torch.Tensor:
    """dx = s (t W) − s² x Σ_r t_r for t = dφ∘e (B, H, C, m) and w1 = [W | 1] (m, D + 1)."""
    s = x.shape[-1] ** -0.25
    tw = t @ w1
    return s * tw[..., :-1] - (s * s) * x * tw[..., -1:]


def kv_state(k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, *, eps: float):
    """Key/value summary: k, v (B, H, L, D), w (m, D) in the math dtype → S (B, H, m, D), z (B, H, m), kmax (B, H)."""
    ct = math_dtype(k.dtype)
    b, h, length, d = k.shape
    m = w.shape[0]
    acc = torch.zeros(b, h, m, d + 1, dtype=ct, device=k.device)  # [Σ exp(..) v | Σ exp(..)]
    vsum = torch.zeros(b, h, d, dtype=ct, device=k.device)
    kmax = torch.full((b, h), float("-inf"), dtype=ct, device=k.device)
    chunk = chunk_rows(b, h, m)
    ws_t = _scaled_t(w)
    for start in range(0, length, chunk):
        kc = k[:, :, start:start + chunk].to(ct)
        vc = v[:, :, start:start + chunk].to(ct)
        u, hk = _project(kc, ws_t)
        new_max = torch.maximum(kmax, u.amax(dim=(-1, -2)))
        alpha = torch.exp(kmax - new_max)  # 0 on the first chunk (kmax = -inf), where acc is 0 anyway
        p = u.sub_(hk + new_max[:, :, None, None]).exp_()  # in place: no new (chunk, m) tensor
        acc = acc * alpha[:, :, None, None] + p.transpose(-1, -2) @ _with_ones(vc)
        vsum += vc.sum(dim=-2)
        kmax = new_max
    return acc[..., :d] + eps * vsum[:, :, None, :], acc[..., d] + eps * length, kmax


def attend(q: torch.Tensor, w: torch.Tensor, state_s: torch.Tensor, state_z: torch.Tensor, *, eps: float):
    """out_i = φ'_q(q_i) S / φ'_q(q_i)·z: q (B, H, L, D) → out (B, H, L, D) in q's dtype, qmax and den (B, H, L)."""
    ct = math_dtype(q.dtype)
    b, h, length, d = q.shape
    out = new_output((b, h, length, d), dtype=q.dtype, device=q.device)
    qmax = new_output((b, h, length), dtype=ct, device=q.device)
    den = new_output((b, h, length), dtype=ct, device=q.device)
    sz = torch.cat([state_s, state_z.unsqueeze(-1)], dim=-1)  # (B, H, m, D + 1)
    eps_part = eps * sz.sum(dim=-2, keepdim=True)  # eps · Σ_r [S_r | z_r]
    chunk = chunk_rows(b, h, w.shape[0])
    ws_t = _scaled_t(w)
    for start in range(0, length, chunk):
        qc = q[:, :, start:start + chunk].to(ct)
        u, hq = _project(qc, ws_t)
        mx = u.amax(dim=-1, keepdim=True)
        nd = u.sub_(hq + mx).exp_() @ sz + eps_part  # [num | den]
        out[:, :, start:start + chunk] = (nd[..., :d] / nd[..., d:]).to(q.dtype)
        qmax[:, :, start:start + chunk] = mx.squeeze(-1)
        den[:, :, start:start + chunk] = nd[..., d]
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
    dq = new_output(q.shape, dtype=q.dtype, device=q.device)
    dk = new_output(k.shape, dtype=k.dtype, device=k.device)
    dv = new_output(v.shape, dtype=v.dtype, device=v.device)
    d = q.shape[-1]
    w1 = _with_ones(w)
    sz_t = torch.cat([state_s, state_z.unsqueeze(-1)], dim=-1).transpose(-1, -2)  # (B, H, D + 1, m)
    d_sz = torch.zeros_like(sz_t.transpose(-1, -2))  # [dS | dz] (B, H, m, D + 1)
    chunk = chunk_rows(q.shape[0], q.shape[1], w.shape[0])
    ws_t = _scaled_t(w)
    for start in range(0, q.shape[2], chunk):
        sl = slice(start, start + chunk)
        qc, gc, oc = q[:, :, sl].to(ct), grad[:, :, sl].to(ct), out[:, :, sl].to(ct)
        u, hq = _project(qc, ws_t)
        e = u.sub_(hq + qmax[:, :, sl, None]).exp_()
        dnd = torch.cat([gc, -(gc * oc).sum(-1, keepdim=True)], dim=-1) / den[:, :, sl, None]  # [dnum | dden]
        dq[:, :, sl] = _input_grad(qc, (dnd @ sz_t).mul_(e), w1).to(q.dtype)
        d_sz += e.transpose(-1, -2) @ dnd + eps * dnd.sum(dim=-2, keepdim=True)
    d_s = d_sz[..., :d]
    eps_dv = eps * d_s.sum(dim=-2, keepdim=True)
    for start in range(0, k.shape[2], chunk):
        sl = slice(start, start + chunk)
        kc, vc = k[:, :, sl].to(ct), v[:, :, sl].to(ct)
        u, hk = _project(kc, ws_t)
        e = u.sub_(hk + kmax[:, :, None, None]).exp_()
        dv[:, :, sl] = (e @ d_s + eps_dv).to(v.dtype)
        dk[:, :, sl] = _input_grad(kc, (_with_ones(vc) @ d_sz.transpose(-1, -2)).mul_(e), w1).to(k.dtype)
    return dq, dk, dv
