"""Fused FAVOR+ forward in Triton: φ is computed in registers and never written to memory.

Three launches, all math in float32 (inputs are converted right after loading):
1. ``_kv_partial_kernel``, grid (B·H, feature blocks, L-splits), all m features in one block where
   ``state_launch`` allows (then K and V are read once): streams K/V tiles, uᵀ = (s·W) kᵀ (tl.dot, features
   × rows, as flash attention's scores with the features as its queries), a running max per feature with
   rescaled accumulators A_r = Σ exp(u_r − h − max_r) v (BLOCK_M × D) and a_r = Σ exp(u_r − h − max_r);
   Σ v is kept separately for the eps part. Splitting L keeps the GPU busy when B·H is small.
2. ``_kv_reduce_kernel``, grid (B·H, 64-feature blocks): the global key max over every partial, rescales
   each partial feature by exp(max_r − max), adds eps·Σv and eps·L: S (B·H, m, D), z (B·H, m), key max
   (B·H), and each block's Σ_r S_r, Σ_r z_r for the eps terms of step 3.
3. ``_attend_kernel``, grid (B·H, L-tiles): per query tile, streams feature blocks with an online row max
   (flash-attention style), out = (Σ_r exp(u_r − h − max) S_r + eps Σ_r S_r) / (Σ_r exp(u_r − h − max) z_r
   + eps Σ_r z_r); the two eps sums add up the reduce kernel's per-block sums. When every feature fits in one
   on-chip block (``staged_features``), ``_attend_staged_kernel`` runs instead, grid (B·H, L-splits): W, S and
   z loaded once per program for its run of query tiles, φ = exp(u − h − max) + eps in one step.
The m^(-1/2) factor of φ cancels in the ratio and is omitted (as in ``chunked``).
"""

import torch
import triton
import triton.language as tl

from trackformer._alloc import new_output

# Features per block of the row kernels (masked when m is not a multiple): 32, as 64-feature blocks spill with
# 3xTF32 dots (sm_90, 32-row tiles: _dq 656 B / _dkv 1616 B at D = 32 fp32, 288 / 468 B fp16). Spills left
# (ptxas, benchmarks/triton_compile_report.py): D = 128 _dq 312 B / _dkv 416 B fp32, 16 / 120 B fp16 and bf16
# (their (32, 128) fp32 accumulators), _dstate 36 B fp32; D = 32 _dkv 24 B fp32.
BLOCK_M = 32
# The split-L state kernels (_kv_partial, _dstate) take up to STATE_FEATURES[D] features per program (all
# m ≤ 256 features at D ≤ 32, so K and V are read once per tile), in 32-row tiles, 8 warps, 2 pipeline stages:
# the largest blocks that compile for sm_90 with 3xTF32 dots without register spills, for every input dtype
# (benchmarks/triton_compile_report.py; half inputs at 256 / 128 features spilled 92-204 B at D = 64 / 128).
STATE_FEATURES = {16: 256, 32: 256, 64: 128, 128: 32}


def interpreting() -> bool:
    return triton.knobs.runtime.interpret if hasattr(triton, "knobs") else False


# tl.dot input precision of every dot with float32 operands (q/k Wᵀ, p S, the gradients' dots), for every input
# dtype: 3xTF32 (≈ fp32 products on tensor cores). Plain TF32 truncates each fp32 operand to 10 mantissa bits
# (the MMA reads the raw register): for half inputs that put dq, dk up to 2.8x past the fp16 bound at Lk = 1
# (the cancellation s·(t W) − s²·x·Σt with t truncated in the dot only; tests/gpu_numerics.py emulates it).
DOT_PRECISION = "tf32x3"


def block_m(m: int) -> int:
    return min(BLOCK_M, triton.next_power_of_2(m))


def state_launch(m: int, d: int, dtype: torch.dtype, *, half_dot: bool = False) -> dict:
    """Feature block, row tile and launch options of the split-L state kernels for m features, head dim d.

    ``half_dot``: the kernel's second dot takes half operands for half inputs (``_kv_partial_kernel``), which
    frees the registers for 64-row tiles and 3 stages at D ≤ 64 (no spills on sm_90 at D = 64 with 128
    features; D = 128 spills with 64 rows)."""
    block_m = min(STATE_FEATURES[d], triton.next_power_of_2(m))
    if half_dot and dtype != torch.float32 and d <= 64:
        return {"BLOCK_M": block_m, "BLOCK_L": 64, "num_warps": 8, "num_stages": 3}
    return {"BLOCK_M": block_m, "BLOCK_L": 32, "num_warps": 8, "num_stages": 2}


# ``_attend_staged_kernel`` keeps W, S and z on chip per program when next_pow2(m) ≤ STAGED_FEATURES[D]: the
# largest blocks that compile for sm_90 in 32-row tiles, 8 warps, with 3xTF32 dots without spills, for every
# input dtype (fp16 D = 64, m = 128: 231 registers, 164 KiB shared memory; 256 features spilled 576 B).
STAGED_FEATURES = {16: 64, 32: 64, 64: 128, 128: 64}
STAGED_BLOCK_L = 32


def staged_features(m: int, d: int) -> int:
    """The staged attend kernel's feature block (next_pow2(m)) when W, S and z fit on chip, else 0."""
    block = triton.next_power_of_2(m)
    return block if block <= STAGED_FEATURES[d] else 0


_TL_TYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


def bounded_dot_dtype(dtype: torch.dtype):
    """Operand type of the dots whose operands are bounded (p ∈ [0, 1]) or the inputs themselves: the input
    dtype (twice the tensor-core rate of TF32 for half inputs). The plain interpreter's bf16 dot is wrong (it
    multiplies the raw uint16 bits), so it keeps float32 there unless the dot is patched to take bf16 values
    (tests/gpu_numerics.py marks its dot ``handles_bf16``)."""
    if dtype == torch.bfloat16 and interpreting():
        from triton.runtime.interpreter import InterpreterBuilder

        return tl.bfloat16 if getattr(InterpreterBuilder.create_dot, "handles_bf16", False) else tl.float32
    return _TL_TYPES[dtype]


def num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def split_rows(length: int, block_l: int, programs: int, device: torch.device):
    """(tiles per split, splits) so that programs × splits roughly fills the device twice over."""
    tiles = triton.cdiv(length, block_l)
    want = max(1, min(tiles, triton.cdiv(2 * num_sms(device), programs)))
    per_split = triton.cdiv(tiles, want)
    return per_split, triton.cdiv(tiles, per_split)


# The per-row-tile kernels (_attend, _dq, _dkv): 32-row tiles, 8 warps, 2 stages, the one configuration that
# compiles for sm_90 with 3xTF32 dots without (or with the fewest) register spills
# (benchmarks/triton_compile_report.py); one build per (dtype, D, feature block), nothing to autotune.
ROW_LAUNCH = {"BLOCK_L": 32, "num_warps": 8, "num_stages": 2}


@triton.jit
def tile_offsets(bh, row0, H, SB, SH, SL, BLOCK_L: tl.constexpr, D: tl.constexpr):
    """Element offsets (BLOCK_L, D) of rows row0 … row0 + BLOCK_L − 1 of head (batch, head) = divmod(bh, H) in a
    (B, H, L, D) tensor with batch/head/row strides SB, SH, SL. The tile's base is 64-bit (L × SL can pass 2³¹
    for a strided view of a fused qkv projection); offsets within the tile stay 32-bit."""
    base = (bh // H) * SB + (bh % H) * SH + tl.cast(row0, tl.int64) * SL
    return base + (tl.arange(0, BLOCK_L)[:, None] * SL + tl.arange(0, D)[None, :])


@triton.jit
def load_feature_block(W, S, Z, bh, offs_m, offs_d, M, D: tl.constexpr):
    """Rows ``offs_m`` of the projection W (m, D) and of one head's state S (m, D) and z (m,), zero past m."""
    mask_m = offs_m < M
    w = tl.load(W + offs_m[:, None] * D + offs_d[None, :], mask=mask_m[:, None], other=0.0)
    sb = tl.load(S + (bh * M + offs_m[:, None]) * D + offs_d[None, :], mask=mask_m[:, None], other=0.0)
    zb = tl.load(Z + bh * M + offs_m, mask=mask_m, other=0.0)
    return mask_m, w, sb, zb


@triton.jit(do_not_specialize=["L", "TILES_PER_SPLIT", "H"])  # one compile for every length and head count
def _kv_partial_kernel(K, V, W, A_PART, Z_PART, FMAX_PART, MAX_PART, VSUM_PART, L, M, s, TILES_PER_SPLIT, H,
                       K_SB, K_SH, K_SL, V_SB, V_SH, V_SL, D: tl.constexpr, BLOCK_L: tl.constexpr,
                       BLOCK_M: tl.constexpr, INPUT_PRECISION: tl.constexpr, VALUE_DTYPE: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    mb = tl.program_id(1)
    split = tl.program_id(2)
    n_mb = tl.num_programs(1)
    n_split = tl.num_programs(2)
    offs_m = mb * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < M
    offs_d = tl.arange(0, D)
    ws = tl.load(W + offs_m[:, None] * D + offs_d[None, :], mask=mask_m[:, None], other=0.0) * s
    acc = tl.zeros((BLOCK_M, D), dtype=tl.float32)
    acc_z = tl.zeros((BLOCK_M,), dtype=tl.float32)
    run_max = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)  # one per feature, as flash attention's rows
    vsum = tl.zeros((BLOCK_L, D), dtype=tl.float32)  # reduced over rows once, after the loop
    first = split * TILES_PER_SPLIT
    last = tl.minimum(first + TILES_PER_SPLIT, tl.cdiv(L, BLOCK_L))
    for t in range(first, last):  # every tile holds at least one valid row
        mask_l = t * BLOCK_L + tl.arange(0, BLOCK_L) < L
        kt = tl.load(K + tile_offsets(bh, t * BLOCK_L, H, K_SB, K_SH, K_SL, BLOCK_L, D), mask=mask_l[:, None],
                     other=0.0).to(tl.float32)
        vt = tl.load(V + tile_offsets(bh, t * BLOCK_L, H, V_SB, V_SH, V_SL, BLOCK_L, D), mask=mask_l[:, None],
                     other=0.0).to(VALUE_DTYPE)
        hk = tl.sum(kt * kt, axis=1) * (s * s * 0.5)
        u_t = tl.dot(ws, tl.trans(kt), input_precision=INPUT_PRECISION)  # (features, rows)
        u_t = tl.where(mask_l[None, :], u_t, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(u_t, axis=1))
        alpha = tl.exp(run_max - new_max)
        # p ∈ [0, 1] enters Σ p v in v's half dtype, and z sums the same rounded p: the ratio S/z stays exact
        # where the features agree (at Lk = 1 out = v, so dq ≈ 0 keeps its cancellation; bf16 p alone cost 2^-9)
        p_t = tl.exp(u_t - new_max[:, None] - hk[None, :]).to(VALUE_DTYPE)
        acc = acc * alpha[:, None] + tl.dot(p_t, vt, input_precision=INPUT_PRECISION)
        acc_z = acc_z * alpha + tl.sum(p_t.to(tl.float32), axis=1)
        vsum += vt.to(tl.float32)
        run_max = new_max
    part = bh * n_split + split
    tl.store(A_PART + (part * M + offs_m[:, None]) * D + offs_d[None, :], acc, mask=mask_m[:, None])
    tl.store(Z_PART + part * M + offs_m, acc_z, mask=mask_m)
    tl.store(FMAX_PART + part * M + offs_m, run_max, mask=mask_m)
    tl.store(MAX_PART + part * n_mb + mb, tl.max(tl.where(mask_m, run_max, float("-inf")), axis=0))
    if mb == 0:
        tl.store(VSUM_PART + part * D + offs_d, tl.sum(vsum, axis=0))


@triton.jit(do_not_specialize=["L", "N_SPLIT", "N_MAX"])  # one compile for every sequence length
def _kv_reduce_kernel(A_PART, Z_PART, FMAX_PART, MAX_PART, VSUM_PART, S, Z, KMAX, SSUM_PART, ZSUM_PART, L, M,
                      N_SPLIT, N_MAX, eps, D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_P: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    rb = tl.program_id(1)
    gmax = float("-inf")
    for p0 in range(0, N_MAX, BLOCK_P):  # the N_MAX partial maxima, BLOCK_P at a time
        offs_p = p0 + tl.arange(0, BLOCK_P)
        part_max = tl.load(MAX_PART + bh * N_MAX + offs_p, mask=offs_p < N_MAX, other=float("-inf"))
        gmax = tl.maximum(gmax, tl.max(part_max, axis=0))
    offs_m = rb * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < M
    offs_d = tl.arange(0, D)
    acc = tl.zeros((BLOCK_M, D), dtype=tl.float32)
    acc_z = tl.zeros((BLOCK_M,), dtype=tl.float32)
    vsum = tl.zeros((D,), dtype=tl.float32)
    for sp in range(N_SPLIT):
        part = bh * N_SPLIT + sp
        scale = tl.exp(tl.load(FMAX_PART + part * M + offs_m, mask=mask_m, other=0.0) - gmax)
        acc += scale[:, None] * tl.load(A_PART + (part * M + offs_m[:, None]) * D + offs_d[None, :],
                                        mask=mask_m[:, None], other=0.0)
        acc_z += scale * tl.load(Z_PART + part * M + offs_m, mask=mask_m, other=0.0)
        vsum += tl.load(VSUM_PART + part * D + offs_d)
    acc = tl.where(mask_m[:, None], acc + eps * vsum[None, :], 0.0)
    acc_z = tl.where(mask_m, acc_z + eps * L, 0.0)
    tl.store(S + (bh * M + offs_m[:, None]) * D + offs_d[None, :], acc, mask=mask_m[:, None])
    tl.store(Z + bh * M + offs_m, acc_z, mask=mask_m)
    # this block's Σ_r S_r and Σ_r z_r (the attend kernel's eps terms add the blocks up)
    tl.store(SSUM_PART + (bh * tl.num_programs(1) + rb) * D + offs_d, tl.sum(acc, axis=0))
    tl.store(ZSUM_PART + bh * tl.num_programs(1) + rb, tl.sum(acc_z, axis=0))
    if rb == 0:
        tl.store(KMAX + bh, gmax)


@triton.jit(do_not_specialize=["L", "N_RB", "H"])  # one compile for every length and head count
def _attend_kernel(Q, W, S, Z, SSUM_PART, ZSUM_PART, OUT, QMAX, DEN, L, M, N_RB, s, eps, H,
                   Q_SB, Q_SH, Q_SL,
                   D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_M: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    row0 = tl.program_id(1) * BLOCK_L
    offs_l = row0 + tl.arange(0, BLOCK_L)
    mask_l = offs_l < L
    offs_d = tl.arange(0, D)
    qt = tl.load(Q + tile_offsets(bh, row0, H, Q_SB, Q_SH, Q_SL, BLOCK_L, D), mask=mask_l[:, None],
                 other=0.0).to(tl.float32)
    hq = tl.sum(qt * qt, axis=1) * (s * s * 0.5)
    run_max = tl.full((BLOCK_L,), float("-inf"), dtype=tl.float32)
    num = tl.zeros((BLOCK_L, D), dtype=tl.float32)
    den = tl.zeros((BLOCK_L,), dtype=tl.float32)
    for m0 in range(0, M, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m, w, sb, zb = load_feature_block(W, S, Z, bh, offs_m, offs_d, M, D)
        u = tl.dot(qt, tl.trans(w), input_precision=INPUT_PRECISION) * s
        u = tl.where(mask_m[None, :], u, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(u, axis=1))
        alpha = tl.exp(run_max - new_max)
        p = tl.exp(u - hq[:, None] - new_max[:, None])
        num = num * alpha[:, None] + tl.dot(p, sb, input_precision=INPUT_PRECISION)
        den = den * alpha + tl.sum(p * zb[None, :], axis=1)
        run_max = new_max
    s_sum = tl.zeros((D,), dtype=tl.float32)
    z_sum = 0.0
    for rb in range(N_RB):
        s_sum += tl.load(SSUM_PART + (bh * N_RB + rb) * D + offs_d)
        z_sum += tl.load(ZSUM_PART + bh * N_RB + rb)
    num += eps * s_sum[None, :]
    den += eps * z_sum
    out_ptrs = bh * L * D + offs_l[:, None] * D + offs_d[None, :]
    tl.store(OUT + out_ptrs, (num / den[:, None]).to(OUT.dtype.element_ty), mask=mask_l[:, None])
    tl.store(QMAX + bh * L + offs_l, run_max, mask=mask_l)
    tl.store(DEN + bh * L + offs_l, den, mask=mask_l)


@triton.jit(do_not_specialize=["L", "TILES_PER_SPLIT", "H"])  # one compile for every length and head count
def _attend_staged_kernel(Q, W, S, Z, OUT, QMAX, DEN, L, M, s, eps, TILES_PER_SPLIT, H, Q_SB, Q_SH, Q_SL,
                          D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_M: tl.constexpr,
                          INPUT_PRECISION: tl.constexpr):
    """``_attend_kernel`` for m ≤ BLOCK_M: W and the head's S, z are loaded once per program (kept on chip over
    its run of query tiles), and with every feature in one block the row max is known before the exp, so
    out = (φ S) / (φ·z) with φ = exp(u − h − max) + eps directly (no online rescaling, no eps sums)."""
    bh = tl.program_id(0).to(tl.int64)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D)
    mask_m, w, sb, zb = load_feature_block(W, S, Z, bh, offs_m, offs_d, M, D)
    ws = w * s
    first = tl.program_id(1) * TILES_PER_SPLIT
    last = tl.minimum(first + TILES_PER_SPLIT, tl.cdiv(L, BLOCK_L))
    for t in range(first, last):
        offs_l = t * BLOCK_L + tl.arange(0, BLOCK_L)
        mask_l = offs_l < L
        qt = tl.load(Q + tile_offsets(bh, t * BLOCK_L, H, Q_SB, Q_SH, Q_SL, BLOCK_L, D), mask=mask_l[:, None],
                     other=0.0).to(tl.float32)
        u = tl.where(mask_m[None, :], tl.dot(qt, tl.trans(ws), input_precision=INPUT_PRECISION), float("-inf"))
        row_max = tl.max(u, axis=1)
        phi = tl.exp(u - (tl.sum(qt * qt, axis=1) * (s * s * 0.5) + row_max)[:, None]) + eps
        phi = tl.where(mask_m[None, :], phi, 0.0)
        num = tl.dot(phi, sb, input_precision=INPUT_PRECISION)
        den = tl.sum(phi * zb[None, :], axis=1)
        out_ptrs = bh * L * D + offs_l[:, None] * D + offs_d[None, :]
        tl.store(OUT + out_ptrs, (num / den[:, None]).to(OUT.dtype.element_ty), mask=mask_l[:, None])
        tl.store(QMAX + bh * L + offs_l, row_max, mask=mask_l)
        tl.store(DEN + bh * L + offs_l, den, mask=mask_l)


def row_strides(x: torch.Tensor) -> tuple[int, int, int]:
    """Batch, head and row strides of a (B, H, L, D) tensor whose last dimension is contiguous."""
    if x.stride(3) != 1:
        raise ValueError(f"the FAVOR+ kernels need a contiguous last dimension, got strides {x.stride()}")
    return x.stride(0), x.stride(1), x.stride(2)


def kv_state(k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, *, eps: float):
    """k, v (B, H, L, D) with contiguous rows, w (m, D) float32 → S (B, H, m, D), z (B, H, m), kmax (B, H) fp32
    and the per-block column sums of S and z that ``attend`` takes (its eps terms)."""
    b, h, length, d = k.shape
    m = w.shape[0]
    launch = state_launch(m, d, k.dtype, half_dot=True)
    n_mb = triton.cdiv(m, launch["BLOCK_M"])
    per_split, n_split = split_rows(length, launch["BLOCK_L"], b * h * n_mb, k.device)
    f32 = dict(dtype=torch.float32, device=k.device)
    a_part = new_output((b * h, n_split, m, d), **f32)
    z_part = new_output((b * h, n_split, m), **f32)
    fmax_part = new_output((b * h, n_split, m), **f32)
    max_part = new_output((b * h, n_split, n_mb), **f32)
    vsum_part = new_output((b * h, n_split, d), **f32)
    s = d ** -0.25
    _kv_partial_kernel[(b * h, n_mb, n_split)](
        k, v, w, a_part, z_part, fmax_part, max_part, vsum_part, length, m, s, per_split, h, *row_strides(k),
        *row_strides(v), D=d, INPUT_PRECISION=DOT_PRECISION, VALUE_DTYPE=bounded_dot_dtype(k.dtype), **launch)
    bm = block_m(m)
    n_rb = triton.cdiv(m, bm)
    state_s = new_output((b, h, m, d), **f32)
    state_z = new_output((b, h, m), **f32)
    kmax = new_output((b, h), **f32)
    ssum_part = new_output((b * h, n_rb, d), **f32)
    zsum_part = new_output((b * h, n_rb), **f32)
    _kv_reduce_kernel[(b * h, n_rb)](
        a_part, z_part, fmax_part, max_part, vsum_part, state_s, state_z, kmax, ssum_part, zsum_part, length, m,
        n_split, n_split * n_mb, eps, D=d, BLOCK_M=bm, BLOCK_P=64, num_warps=4, num_stages=1)
    return state_s, state_z, kmax, (ssum_part, zsum_part)


def attend(q: torch.Tensor, w: torch.Tensor, state_s: torch.Tensor, state_z: torch.Tensor, sums: tuple, *,
           eps: float):
    """q (B, H, L, D) with contiguous rows, the state and ``sums`` from ``kv_state`` → out (B, H, L, D)
    contiguous in q's dtype, row max and denominator (B, H, L) float32."""
    b, h, length, d = q.shape
    m = w.shape[0]
    out = new_output(q.shape, dtype=q.dtype, device=q.device)
    qmax = new_output((b, h, length), dtype=torch.float32, device=q.device)
    den = new_output((b, h, length), dtype=torch.float32, device=q.device)
    staged = staged_features(m, d)
    if staged:
        per_split, n_split = split_rows(length, STAGED_BLOCK_L, b * h, q.device)
        _attend_staged_kernel[(b * h, n_split)](
            q, w, state_s, state_z, out, qmax, den, length, m, d ** -0.25, eps, per_split, h, *row_strides(q),
            D=d, BLOCK_L=STAGED_BLOCK_L, BLOCK_M=staged, INPUT_PRECISION=DOT_PRECISION, num_warps=8,
            num_stages=2)
        return out, qmax, den
    _attend_kernel[(b * h, triton.cdiv(length, ROW_LAUNCH["BLOCK_L"]))](
        q, w, state_s, state_z, *sums, out, qmax, den, length, m, sums[1].shape[1], d ** -0.25, eps, h,
        *row_strides(q), D=d, BLOCK_M=block_m(m), INPUT_PRECISION=DOT_PRECISION, **ROW_LAUNCH)
    return out, qmax, den
