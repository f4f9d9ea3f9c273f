"""Fused FAVOR+ backward in Triton, recomputing φ from q, k and the saved state (no L×m tensor is stored).

With g = dout, den_i = φq_i·z: dnum_i = g_i/den_i, dden_i = −(g_i·out_i)/den_i, dφq_i = S dnum_i + z dden_i,
dS = Σ_i φq_iᵀ dnum_i, dz = Σ_i φq_i dden_i, dv_j = dSᵀ φk_j, dφk_j = dS v_j + dz, and through
φ = e + eps, e_r = exp(s x·w_r − s²‖x‖²/2 − max) (max detached): dx = s (dφ∘e) W − s² x Σ_r dφ_r e_r.
Launches (float32 math):
1. ``_dstate_kernel``, grid (B·H, feature blocks, Lq-splits), all m features per block where
   ``state_launch`` allows (q, dout, out read once per tile): φqᵀ = exp((s·W) qᵀ − h − max) + eps (features ×
   rows), partial dS, dz over the split's query tiles.
2. ``_dq_kernel``, grid (B·H, max(Lq-tiles, 64-feature blocks)): dq, streaming feature blocks; program
   (bh, j) for j < the number of feature blocks also sums block j of the dS, dz partials over the splits
   (deterministic, no atomics, no launch of its own: dq does not need dS).
3. ``_dkv_kernel``, grid (B·H, Lk-tiles): dk and dv, streaming feature blocks.
"""

import torch
import triton
import triton.language as tl

from trackformer._alloc import new_output

from .triton_fwd import (
    DOT_PRECISION,
    ROW_LAUNCH,
    block_m,
    load_feature_block,
    row_strides,
    split_rows,
    state_launch,
    tile_offsets,
)


@triton.jit
def _row_grads(G, OUT, DEN, g_ptrs, out_ptrs, row, mask_l):
    """dnum = g/den (BLOCK_L, D) and dden = −(g·out)/den (BLOCK_L,) for one query tile."""
    g = tl.load(G + g_ptrs, mask=mask_l[:, None], other=0.0).to(tl.float32)
    o = tl.load(OUT + out_ptrs, mask=mask_l[:, None], other=0.0).to(tl.float32)
    den = tl.load(DEN + row, mask=mask_l, other=1.0)
    return g / den[:, None], -tl.sum(g * o, axis=1) / den


@triton.jit(do_not_specialize=["L", "N_SPLIT", "H"])  # one compile for every length, split and head count
def _dq_kernel(G, Q, OUT, W, S, Z, QMAX, DEN, DQ, DS_PART, DZ_PART, DS, DZ, L, M, N_SPLIT, s, H,
               G_SB, G_SH, G_SL, Q_SB, Q_SH, Q_SL, D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_M: tl.constexpr,
               INPUT_PRECISION: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    if tl.program_id(1) * BLOCK_M < M:
        _sum_splits(DS_PART, DZ_PART, DS, DZ, bh, tl.program_id(1), M, N_SPLIT, D, BLOCK_M)
    row0 = tl.program_id(1) * BLOCK_L
    if row0 < L:
        _dq_tile(G, Q, OUT, W, S, Z, QMAX, DEN, DQ, bh, row0, L, M, s, H, G_SB, G_SH, G_SL, Q_SB, Q_SH, Q_SL, D,
                 BLOCK_L, BLOCK_M, INPUT_PRECISION)


@triton.jit
def _sum_splits(DS_PART, DZ_PART, DS, DZ, bh, rb, M, N_SPLIT, D: tl.constexpr, BLOCK_M: tl.constexpr):
    """Feature block rb of head bh's dS and dz: the sum of the N_SPLIT partials of ``_dstate_kernel``."""
    offs_m = rb * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < M
    offs_d = tl.arange(0, D)
    acc = tl.zeros((BLOCK_M, D), dtype=tl.float32)
    acc_z = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for sp in range(N_SPLIT):
        part = bh * N_SPLIT + sp
        acc += tl.load(DS_PART + (part * M + offs_m[:, None]) * D + offs_d[None, :], mask=mask_m[:, None],
                       other=0.0)
        acc_z += tl.load(DZ_PART + part * M + offs_m, mask=mask_m, other=0.0)
    tl.store(DS + (bh * M + offs_m[:, None]) * D + offs_d[None, :], acc, mask=mask_m[:, None])
    tl.store(DZ + bh * M + offs_m, acc_z, mask=mask_m)


@triton.jit
def _dq_tile(G, Q, OUT, W, S, Z, QMAX, DEN, DQ, bh, row0, L, M, s, H, G_SB, G_SH, G_SL, Q_SB, Q_SH, Q_SL,
             D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_M: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    """dq for query rows row0 … row0 + BLOCK_L − 1 of head bh."""
    offs_l = row0 + tl.arange(0, BLOCK_L)
    mask_l = offs_l < L
    offs_d = tl.arange(0, D)
    ptrs = bh * L * D + offs_l[:, None] * D + offs_d[None, :]  # out and dq: contiguous
    row = bh * L + offs_l
    q_ptrs = tile_offsets(bh, row0, H, Q_SB, Q_SH, Q_SL, BLOCK_L, D)
    g_ptrs = tile_offsets(bh, row0, H, G_SB, G_SH, G_SL, BLOCK_L, D)
    qt = tl.load(Q + q_ptrs, mask=mask_l[:, None], other=0.0).to(tl.float32)
    hq = tl.sum(qt * qt, axis=1) * (s * s * 0.5)
    qmax = tl.load(QMAX + row, mask=mask_l, other=0.0)
    dnum, dden = _row_grads(G, OUT, DEN, g_ptrs, ptrs, row, mask_l)
    acc = tl.zeros((BLOCK_L, D), dtype=tl.float32)
    t_sum = tl.zeros((BLOCK_L,), dtype=tl.float32)
    for m0 in range(0, M, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m, w, sb, zb = load_feature_block(W, S, Z, bh, offs_m, offs_d, M, D)
        u = tl.dot(qt, tl.trans(w), input_precision=INPUT_PRECISION) * s
        e = tl.where(mask_m[None, :], tl.exp(u - hq[:, None] - qmax[:, None]), 0.0)
        dphi = tl.dot(dnum, tl.trans(sb), input_precision=INPUT_PRECISION) + dden[:, None] * zb[None, :]
        t = dphi * e
        acc += tl.dot(t, w, input_precision=INPUT_PRECISION)
        t_sum += tl.sum(t, axis=1)
    dq = s * acc - (s * s) * qt * t_sum[:, None]
    tl.store(DQ + ptrs, dq.to(DQ.dtype.element_ty), mask=mask_l[:, None])


@triton.jit(do_not_specialize=["L", "TILES_PER_SPLIT", "H"])  # one compile for every length and head count
def _dstate_kernel(G, Q, OUT, W, QMAX, DEN, DS_PART, DZ_PART, L, M, s, eps, TILES_PER_SPLIT, H,
                   G_SB, G_SH, G_SL, Q_SB, Q_SH, Q_SL, D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_M: tl.constexpr,
                   INPUT_PRECISION: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    split = tl.program_id(2)
    offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < M
    offs_d = tl.arange(0, D)
    ws = tl.load(W + offs_m[:, None] * D + offs_d[None, :], mask=mask_m[:, None], other=0.0) * s
    acc = tl.zeros((BLOCK_M, D), dtype=tl.float32)
    acc_z = tl.zeros((BLOCK_M,), dtype=tl.float32)
    first = split * TILES_PER_SPLIT
    last = tl.minimum(first + TILES_PER_SPLIT, tl.cdiv(L, BLOCK_L))
    for t in range(first, last):
        offs_l = t * BLOCK_L + tl.arange(0, BLOCK_L)
        mask_l = offs_l < L
        row = bh * L + offs_l
        qt = tl.load(Q + tile_offsets(bh, t * BLOCK_L, H, Q_SB, Q_SH, Q_SL, BLOCK_L, D), mask=mask_l[:, None],
                     other=0.0).to(tl.float32)
        shift = tl.sum(qt * qt, axis=1) * (s * s * 0.5) + tl.load(QMAX + row, mask=mask_l, other=0.0)
        dnum, dden = _row_grads(G, OUT, DEN, tile_offsets(bh, t * BLOCK_L, H, G_SB, G_SH, G_SL, BLOCK_L, D),
                                bh * L * D + offs_l[:, None] * D + offs_d[None, :], row, mask_l)  # 0 on masked rows
        u_t = tl.dot(ws, tl.trans(qt), input_precision=INPUT_PRECISION)  # (features, rows)
        phi_t = tl.exp(u_t - shift[None, :]) + eps
        acc += tl.dot(phi_t, dnum, input_precision=INPUT_PRECISION)
        acc_z += tl.sum(phi_t * dden[None, :], axis=1)
    part = bh * tl.num_programs(2) + split
    tl.store(DS_PART + (part * M + offs_m[:, None]) * D + offs_d[None, :], acc, mask=mask_m[:, None])
    tl.store(DZ_PART + part * M + offs_m, acc_z, mask=mask_m)


@triton.jit(do_not_specialize=["L", "H"])  # one compile for every length and head count
def _dkv_kernel(K, V, W, DS, DZ, KMAX, DK, DV, L, M, s, eps, H, K_SB, K_SH, K_SL, V_SB, V_SH, V_SL,
                D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_M: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    row0 = tl.program_id(1) * BLOCK_L
    offs_l = row0 + tl.arange(0, BLOCK_L)
    mask_l = offs_l < L
    offs_d = tl.arange(0, D)
    ptrs = bh * L * D + offs_l[:, None] * D + offs_d[None, :]  # dk and dv: contiguous
    k_ptrs = tile_offsets(bh, row0, H, K_SB, K_SH, K_SL, BLOCK_L, D)
    v_ptrs = tile_offsets(bh, row0, H, V_SB, V_SH, V_SL, BLOCK_L, D)
    kt = tl.load(K + k_ptrs, mask=mask_l[:, None], other=0.0).to(tl.float32)
    vt = tl.load(V + v_ptrs, mask=mask_l[:, None], other=0.0).to(tl.float32)
    hk = tl.sum(kt * kt, axis=1) * (s * s * 0.5)
    kmax = tl.load(KMAX + bh)
    acc_k = tl.zeros((BLOCK_L, D), dtype=tl.float32)
    acc_v = tl.zeros((BLOCK_L, D), dtype=tl.float32)
    t_sum = tl.zeros((BLOCK_L,), dtype=tl.float32)
    for m0 in range(0, M, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m, w, dsb, dzb = load_feature_block(W, DS, DZ, bh, offs_m, offs_d, M, D)
        u = tl.dot(kt, tl.trans(w), input_precision=INPUT_PRECISION) * s
        e = tl.where(mask_m[None, :], tl.exp(u - hk[:, None] - kmax), 0.0)
        acc_v += tl.dot(e + eps, dsb, input_precision=INPUT_PRECISION)  # dsb is 0 on masked features
        t = (tl.dot(vt, tl.trans(dsb), input_precision=INPUT_PRECISION) + dzb[None, :]) * e
        acc_k += tl.dot(t, w, input_precision=INPUT_PRECISION)
        t_sum += tl.sum(t, axis=1)
    dk = s * acc_k - (s * s) * kt * t_sum[:, None]
    tl.store(DK + ptrs, dk.to(DK.dtype.element_ty), mask=mask_l[:, None])
    tl.store(DV + ptrs, acc_v.to(DV.dtype.element_ty), mask=mask_l[:, None])


def backward(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
             out: torch.Tensor, state_s: torch.Tensor, state_z: torch.Tensor, kmax: torch.Tensor,
             qmax: torch.Tensor, den: torch.Tensor, *, eps: float):
    """Inputs as saved by the forward (grad, q, k, v with contiguous rows; out and the state contiguous) →
    (dq, dk, dv), contiguous, in the input dtype."""
    b, h, lq, d = q.shape
    lk = k.shape[2]
    m = w.shape[0]
    bm = block_m(m)
    s = d ** -0.25
    launch = state_launch(m, d, q.dtype)
    n_mb = triton.cdiv(m, launch["BLOCK_M"])
    per_split, n_split = split_rows(lq, launch["BLOCK_L"], b * h * n_mb, q.device)
    f32 = dict(dtype=torch.float32, device=q.device)
    ds_part = new_output((b * h, n_split, m, d), **f32)
    dz_part = new_output((b * h, n_split, m), **f32)
    _dstate_kernel[(b * h, n_mb, n_split)](
        grad, q, out, w, qmax, den, ds_part, dz_part, lq, m, s, eps, per_split, h, *row_strides(grad),
        *row_strides(q), D=d, INPUT_PRECISION=DOT_PRECISION, **launch)
    dq = new_output(q.shape, dtype=q.dtype, device=q.device)
    d_s = new_output((b * h, m, d), **f32)
    d_z = new_output((b * h, m), **f32)
    _dq_kernel[(b * h, max(triton.cdiv(lq, ROW_LAUNCH["BLOCK_L"]), triton.cdiv(m, bm)))](
        grad, q, out, w, state_s, state_z, qmax, den, dq, ds_part, dz_part, d_s, d_z, lq, m, n_split, s, h,
        *row_strides(grad), *row_strides(q), D=d, BLOCK_M=bm, INPUT_PRECISION=DOT_PRECISION, **ROW_LAUNCH)
    dk = new_output(k.shape, dtype=k.dtype, device=k.device)
    dv = new_output(v.shape, dtype=v.dtype, device=v.device)
    _dkv_kernel[(b * h, triton.cdiv(lk, ROW_LAUNCH["BLOCK_L"]))](
        k, v, w, d_s, d_z, kmax, dk, dv, lk, m, s, eps, h, *row_strides(k), *row_strides(v), D=d, BLOCK_M=bm,
        INPUT_PRECISION=DOT_PRECISION, **ROW_LAUNCH)
    return dq, dk, dv
