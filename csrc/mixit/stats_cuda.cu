// CUDA kernels of trackformer::mixit_stats (plain CUDA, no torch): one pass over the estimates and mixtures.
//
// Why not a (split-K) batched matmul: G, c, e are a (M+N)² Gram over a very long K = C·T, which cuBLAS handles
// poorly (shared/ANCHORS.md: plain bmm 19.5 ms at 30 s), and a split-K by hand still launches several kernels and
// needs fp32 partials for fp16/bf16 inputs. Here each block reads one chunk of T for all M + N rows of one example
// exactly once into shared memory (converted to float, or double for float64), computes the Gram's upper triangle
// from there in 2×2 register blocks, and writes one partial per entry; a second tiny kernel sums the chunks in a
// fixed order (deterministic, no atomics) and scatters them into G, c, e. Global traffic ≈ one read of the inputs;
// shared-memory traffic is one 4-byte load per multiply-add, which keeps M ≤ 8 bound by HBM bandwidth and M = 16
// within about 1.5× of it (estimate for H100/H200: 128 B/cycle/SM of shared memory vs ≈ 18 B/cycle/SM of HBM).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "stats.h"

namespace {

using namespace trackformer::mixit;

constexpr int kThreads = 256;
constexpr int kMaxRows = 32;       // M + N ≤ 16 + 16
constexpr int kBlocksPerSM = 4;    // chunks per example aim at this many blocks per SM over the batch

template <typename acc_t>
__host__ __device__ constexpr int tile_len() { return sizeof(acc_t) == 8 ? 128 : 256; }  // shared tile ≤ 33 KiB

__device__ __forceinline__ float to_acc(float v, float) { return v; }
__device__ __forceinline__ double to_acc(double v, double) { return v; }
__device__ __forceinline__ float to_acc(__half v, float) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v, float) { return __bfloat162float(v); }

int64_t chunk_length(int batch, int64_t length, int tile) {
  int device = 0, sms = 132;
  if (cudaGetDevice(&device) == cudaSuccess) cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  int64_t target = (static_cast<int64_t>(sms) * kBlocksPerSM + batch - 1) / batch;
  int64_t tiles = (length + tile - 1) / tile;
  int64_t per_chunk = (tiles + target - 1) / target;
  return (per_chunk > 0 ? per_chunk : 1) * tile;
}

// Block (bi, bj), bi ≤ bj, of the upper triangle of a nb × nb grid of 2×2 blocks, row-major.
__device__ void block_coords(int blk, int nb, int* bi, int* bj) {
  int r = 0;
  while (blk >= nb - r) {
    blk -= nb - r;
    ++r;
  }
  *bi = r;
  *bj = r + blk;
}

// Partial Gram of the rows [ŝ; x] (padded to an even count with a zero row) over one chunk of positions.
// Thread = (2×2 block of the Gram's upper triangle, slice of the positions): per position it reads 4 values from
// shared memory for 4 products (one load per multiply-add, half of what one pair per thread needs).
// Writes the chunk's upper-triangle entries (i ≤ j < rows) to partial[(b·chunks + chunk)·rows² + i·rows + j].
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
partial_kernel(const scalar_t* __restrict__ est, const scalar_t* __restrict__ mix, int m, int n, int64_t length,
               int64_t chunk_len, double* __restrict__ partial) {
  constexpr int kTile = tile_len<acc_t>();
  __shared__ acc_t tile[kMaxRows][kTile + 1];  // +1: rows start in different banks
  __shared__ double red[kThreads * 4];
  const int tid = threadIdx.x, chunk = blockIdx.x, b = blockIdx.y, chunks = gridDim.x;
  const int rows = m + n, padded_rows = (rows + 1) & ~1, nb = padded_rows / 2;
  const int blocks = nb * (nb + 1) / 2;  // ≤ 136 for 32 rows
  const int slices = kThreads / blocks, items = blocks * slices;
  const bool active = tid < items;
  const int blk = tid % blocks, slice = tid / blocks;
  int bi, bj;
  block_coords(blk, nb, &bi, &bj);
  const int r0 = 2 * bi, r1 = 2 * bi + 1, c0 = 2 * bj, c1 = 2 * bj + 1;
  const scalar_t* s = est + static_cast<int64_t>(b) * m * length;
  const scalar_t* x = mix + static_cast<int64_t>(b) * n * length;

  double acc00 = 0.0, acc01 = 0.0, acc10 = 0.0, acc11 = 0.0;
  const int64_t begin = chunk * chunk_len;
  const int64_t end = begin + chunk_len < length ? begin + chunk_len : length;
  for (int64_t t0 = begin; t0 < end; t0 += kTile) {
    const int w = static_cast<int>(end - t0 < kTile ? end - t0 : kTile);
    for (int idx = tid; idx < padded_rows * kTile; idx += kThreads) {
      const int r = idx / kTile, t = idx % kTile;
      acc_t v = acc_t(0);
      if (r < rows && t < w) v = to_acc((r < m ? s + r * length : x + (r - m) * length)[t0 + t], acc_t(0));
      tile[r][t] = v;
    }
    __syncthreads();
    if (active) {
      acc_t s00 = 0, s01 = 0, s10 = 0, s11 = 0;
      for (int t = slice; t < w; t += slices) {
        const acc_t a0 = tile[r0][t], a1 = tile[r1][t], b0 = tile[c0][t], b1 = tile[c1][t];
        s00 += a0 * b0;
        s01 += a0 * b1;
        s10 += a1 * b0;
        s11 += a1 * b1;
      }
      acc00 += static_cast<double>(s00);
      acc01 += static_cast<double>(s01);
      acc10 += static_cast<double>(s10);
      acc11 += static_cast<double>(s11);
    }
    __syncthreads();
  }
  if (active) {
    red[4 * tid + 0] = acc00;
    red[4 * tid + 1] = acc01;
    red[4 * tid + 2] = acc10;
    red[4 * tid + 3] = acc11;
  }
  __syncthreads();
  double* out = partial + (static_cast<int64_t>(b) * chunks + chunk) * rows * rows;
  for (int e = tid; e < 4 * blocks; e += kThreads) {
    const int k = e / 4, q = e % 4;
    int ki, kj;
    block_coords(k, nb, &ki, &kj);
    const int i = 2 * ki + q / 2, j = 2 * kj + q % 2;
    if (i > j || j >= rows) continue;  // lower half of a diagonal block, or the padding row
    double v = 0.0;
    for (int sl = 0; sl < slices; ++sl) v += red[4 * (sl * blocks + k) + q];  // item = slice·blocks + block
    out[i * rows + j] = v;
  }
}

// Sums the chunks' partial Grams in a fixed order and scatters the needed pairs into G, c, e.
template <typename out_t>
__global__ void __launch_bounds__(kThreads)
reduce_kernel(const double* __restrict__ partial, int chunks, int m, int n, out_t* g, out_t* c, out_t* e) {
  const int b = blockIdx.x, pairs = num_pairs(m, n), rows = m + n;
  const double* in = partial + static_cast<int64_t>(b) * chunks * rows * rows;
  for (int p = threadIdx.x; p < pairs; p += kThreads) {
    int i, j;
    pair_rows(p, m, n, &i, &j);  // i ≤ j
    double v = 0.0;
    for (int k = 0; k < chunks; ++k) v += in[static_cast<int64_t>(k) * rows * rows + i * rows + j];
    store_pair(p, m, n, v, g + static_cast<int64_t>(b) * m * m, c + static_cast<int64_t>(b) * m * n,
               e + static_cast<int64_t>(b) * n);
  }
}

template <typename scalar_t, typename acc_t>
int launch(const void* est, const void* mix, int batch, int m, int n, int64_t length, void* g, void* c, void* e,
           void* workspace, cudaStream_t stream) {
  const int64_t chunk_len = chunk_length(batch, length, tile_len<acc_t>());
  const int chunks = static_cast<int>((length + chunk_len - 1) / chunk_len);
  double* partial = static_cast<double*>(workspace);
  partial_kernel<scalar_t, acc_t><<<dim3(chunks, batch), kThreads, 0, stream>>>(
      static_cast<const scalar_t*>(est), static_cast<const scalar_t*>(mix), m, n, length, chunk_len, partial);
  reduce_kernel<acc_t><<<batch, kThreads, 0, stream>>>(partial, chunks, m, n, static_cast<acc_t*>(g),
                                                       static_cast<acc_t*>(c), static_cast<acc_t*>(e));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

extern "C" int64_t trackformer_mixit_stats_workspace(int batch, int m, int n, int64_t length, int input_type) {
  const int tile = input_type == kFloat64 ? tile_len<double>() : tile_len<float>();
  const int64_t chunk_len = chunk_length(batch, length, tile);
  return static_cast<int64_t>(batch) * ((length + chunk_len - 1) / chunk_len) * (m + n) * (m + n) *
         static_cast<int64_t>(sizeof(double));
}

extern "C" int trackformer_mixit_stats_cuda(const void* estimates, const void* mixtures, int input_type, int batch,
                                            int m, int n, int64_t length, void* g, void* c, void* e,
                                            void* workspace, cudaStream_t stream) {
  if (batch == 0 || length == 0) return static_cast<int>(cudaErrorInvalidValue);
  switch (input_type) {
    case kFloat64:
      return launch<double, double>(estimates, mixtures, batch, m, n, length, g, c, e, workspace, stream);
    case kFloat16:
      return launch<__half, float>(estimates, mixtures, batch, m, n, length, g, c, e, workspace, stream);
    case kBFloat16:
      return launch<__nv_bfloat16, float>(estimates, mixtures, batch, m, n, length, g, c, e, workspace, stream);
    default:
      return launch<float, float>(estimates, mixtures, batch, m, n, length, g, c, e, workspace, stream);
  }
}
