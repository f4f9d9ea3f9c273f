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

BLOCK_M = 64  # features per block of the row kernels (masked when m is not a multiple)
# The split-L state kernels (_kv_partial, _dstate) take up to STATE_FEATURES[fp32 inputs?][D] features per
# program (all m ≤ 256 features at D ≤ 64 for half inputs, so K and V are read once per tile), in 32-row
# tiles, 8 warps, 2 pipeline stages: the largest blocks that compile for sm_90 without register spills
# (benchmarks/triton_compile_report.py; 3xTF32 dots for fp32 inputs need twice the operand space).
STATE_FEATURES = {False: {16: 256, 32: 256, 64: 256, 128: 128}, True: {16: 256, 32: 256, 64: 128, 128: 32}}


def interpreting() -> bool:
    return triton.knobs.runtime.interpret if hasattr(triton, "knobs") else False


def precision(dtype: torch.dtype) -> str:
    """tl.dot input precision: 3xTF32 (≈ fp32 products on tensor cores) for float32 inputs, TF32 for half
    inputs (fp16 has TF32's 10-bit mantissa; bf16 inputs are exact in TF32, only W is rounded)."""
    return "tf32x3" if dtype == torch.float32 else "tf32"


def block_m(m: int) -> int:
    return min(BLOCK_M, triton.next_power_of_2(m))


def state_launch(m: int, d: int, dtype: torch.dtype, *, half_dot: bool = False) -> dict:
    """Feature block, row tile and launch options of the split-L state kernels for m features, head dim d.

    ``half_dot``: the kernel's second dot takes half operands for half inputs (``_kv_partial_kernel``), which
    frees the registers for 64-row tiles and 3 stages at D ≤ 64 (no spills on sm_90 at D = 64, m = 256;
    D = 128 spills with 64 rows)."""
    block_m = min(STATE_FEATURES[dtype == torch.float32][d], triton.next_power_of_2(m))
    if half_dot and dtype != torch.float32 and d <= 64:
        return {"BLOCK_M": block_m, "BLOCK_L": 64, "num_warps": 8, "num_stages": 3}
    return {"BLOCK_M": block_m, "BLOCK_L": 32, "num_warps": 8, "num_stages": 2}


# ``_attend_staged_kernel`` keeps W, S and z on chip per program when next_pow2(m) ≤
# STAGED_FEATURES[fp32 inputs?][D]: the largest blocks that compile for sm_90 in 32-row tiles, 8 warps, without
# spills (at D = 64, m = 256, bf16: 128 registers, 164 KiB shared memory; benchmarks/triton_compile_report.py).
STAGED_FEATURES = {False: {16: 128, 32: 128, 64: 256, 128: 128}, True: {16: 64, 32: 64, 64: 128, 128: 64}}
STAGED_BLOCK_L = 32


def staged_features(m: int, d: int, dtype: torch.dtype) -> int:
    """The staged attend kernel's feature block (next_pow2(m)) when W, S and z fit on chip, else 0."""
    block = triton.next_power_of_2(m)
    return block if block <= STAGED_FEATURES[dtype == torch.float32][d] else 0


_TL_TYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


def bounded_dot_dtype(dtype: torch.dtype):
    """Operand type of the dots whose operands are bounded (p ∈ [0, 1]) or the inputs themselves: the input
    dtype (twice the tensor-core rate of TF32 for half inputs). The interpreter's bf16 dot is wrong
    (numpy has no bfloat16), so it keeps float32 there."""
    return tl.float32 if dtype == torch.bfloat16 and interpreting() else _TL_TYPES[dtype]


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


def row_configs(interpreter: bool | None = None):
    """Autotune configs for the per-row-tile kernels (a single one under the interpreter).

    Two candidates that compile for sm_90 without register spills for half inputs; fp32 inputs keep only the
    32-row one (``keep_configs``: 64-row tiles spill with 3xTF32, benchmarks/triton_compile_report.py). Each
    candidate costs a compile and a timing on first use.
    """
    if interpreting() if interpreter is None else interpreter:
        return [triton.Config({"BLOCK_L": 64}, num_warps=4)]
    return [triton.Config({"BLOCK_L": bl}, num_warps=w, num_stages=st) for bl, w, st in ((32, 8, 2), (64, 8, 2))]


def keep_configs(configs, input_precision: str):
    """The candidates worth timing for this dot precision: fp32 inputs (3xTF32) only 32-row tiles."""
    kept = [c for c in configs if input_precision != "tf32x3" or c.kwargs["BLOCK_L"] <= 32]
    return kept or configs[:1]


def length_bucket(length: int) -> int:
    """The autotune key's sequence-length class: the next power of two (each class is tuned once)."""
    return triton.next_power_of_2(length)


def _quick_bench(kernel_call, quantiles):
    """Autotuning timer: 5 ms warm-up and 20 ms of repetitions per candidate (Triton's defaults are 25 / 100)."""
    return triton.testing.do_bench(kernel_call, warmup=5, rep=20, quantiles=quantiles)


def autotune_rows(kernel):
    """Autotunes a per-row-tile kernel over ``row_configs`` per (m, D, precision, length bucket); the kernel
    takes the bucket as ``L_BUCKET`` (unused in its body, not specialised). Results are cached on disk."""
    prune = {"early_config_prune": lambda configs, _args, **kw: keep_configs(configs, kw["INPUT_PRECISION"])}
    return triton.autotune(configs=row_configs(), key=["M", "D", "INPUT_PRECISION", "L_BUCKET"],
                           prune_configs_by=prune, do_bench=_quick_bench, cache_results=True)(kernel)


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


@triton.jit(do_not_specialize=["L", "TILES_PER_SPLIT"])  # one compile for every sequence length
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
        p_t = tl.exp(u_t - new_max[:, None] - hk[None, :])  # in [0, 1]: exact enough in v's half dtype
        acc = acc * alpha[:, None] + tl.dot(p_t.to(VALUE_DTYPE), vt, input_precision=INPUT_PRECISION)
        acc_z = acc_z * alpha + tl.sum(p_t, axis=1)
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
    offs_p = tl.arange(0, BLOCK_P)
    gmax = tl.max(tl.load(MAX_PART + bh * N_MAX + offs_p, mask=offs_p < N_MAX, other=float("-inf")), axis=0)
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


@autotune_rows
@triton.jit(do_not_specialize=["L", "L_BUCKET"])  # one compile for every sequence length
def _attend_kernel(Q, W, S, Z, SSUM_PART, ZSUM_PART, OUT, QMAX, DEN, L, L_BUCKET, M, N_RB, s, eps, H,
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


@triton.jit(do_not_specialize=["L", "TILES_PER_SPLIT"])  # one compile for every sequence length
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
        *row_strides(v), D=d, INPUT_PRECISION=precision(k.dtype), VALUE_DTYPE=bounded_dot_dtype(k.dtype), **launch)
    bm = block_m(m)
    n_rb = triton.cdiv(m, bm)
    state_s = new_output((b, h, m, d), **f32)
    state_z = new_output((b, h, m), **f32)
    kmax = new_output((b, h), **f32)
    ssum_part = new_output((b * h, n_rb, d), **f32)
    zsum_part = new_output((b * h, n_rb), **f32)
    _kv_reduce_kernel[(b * h, n_rb)](
        a_part, z_part, fmax_part, max_part, vsum_part, state_s, state_z, kmax, ssum_part, zsum_part, length, m,
        n_split, n_split * n_mb, eps, D=d, BLOCK_M=bm, BLOCK_P=triton.next_power_of_2(n_split * n_mb),
        num_warps=4, num_stages=1)
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
    staged = staged_features(m, d, q.dtype)
    if staged:
        per_split, n_split = split_rows(length, STAGED_BLOCK_L, b * h, q.device)
        _attend_staged_kernel[(b * h, n_split)](
            q, w, state_s, state_z, out, qmax, den, length, m, d ** -0.25, eps, per_split, h, *row_strides(q),
            D=d, BLOCK_L=STAGED_BLOCK_L, BLOCK_M=staged, INPUT_PRECISION=precision(q.dtype), num_warps=8,
            num_stages=2)
        return out, qmax, den
    grid = lambda meta: (b * h, triton.cdiv(length, meta["BLOCK_L"]))
    _attend_kernel[grid](q, w, state_s, state_z, *sums, out, qmax, den, length, length_bucket(length), m,
                         sums[1].shape[1], d ** -0.25, eps, h, *row_strides(q),
                         D=d, BLOCK_M=block_m(m), INPUT_PRECISION=precision(q.dtype))
    return out, qmax, den
