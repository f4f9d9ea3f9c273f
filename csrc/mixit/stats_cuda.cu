// CUDA kernels of trackformer::mixit_stats (plain CUDA, no torch): one pass over the estimates and mixtures.
//
// Why not a (split-K) batched matmul: G, c, e are a (M+N)² Gram over a very long K = C·T, which cuBLAS handles
// poorly (shared/ANCHORS.md: plain bmm 19.5 ms at 30 s), and a split-K by hand still launches several kernels and
// needs fp32 partials for fp16/bf16 inputs. Here each block reads one chunk of T for all M + N rows of one example
// exactly once into shared memory (converted to float, or double for float64), computes the Gram's upper triangle
// from there in 2×2 register blocks, and writes one partial per entry; a second tiny kernel sums the chunks in a
// fixed order (deterministic, no atomics) and scatters them into G, c, e (float64).
//
// Loads: 16-byte vectors when every row starts 16-byte aligned (aligned pointers, T·C a multiple of the vector),
// element by element otherwise; double-buffered through registers (the next tile's loads are in flight while the
// block computes on the current one). A warp reads 64–128 contiguous bytes of each of a few rows, and its lanes
// map to distinct shared-memory banks when they store (row stride kTile + 1: row r, element t is bank (r + t) mod
// 32), so the shared stores do not conflict.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "stats.h"

namespace {

using namespace trackformer::mixit;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxRows = 32;       // M + N ≤ 16 + 16
constexpr int kBlocksPerSM = 4;    // chunks per example aim at this many blocks per SM over the batch
constexpr int kReduceWarps = 8;    // pairs per block of the reduce kernel (one warp each)

template <typename acc_t>
__host__ __device__ constexpr int tile_len() { return sizeof(acc_t) == 8 ? 128 : 256; }  // shared tile ≤ 33 KiB

__device__ __forceinline__ float to_acc(float v, float) { return v; }
__device__ __forceinline__ double to_acc(double v, double) { return v; }
__device__ __forceinline__ float to_acc(__half v, float) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v, float) { return __bfloat162float(v); }

// V consecutive input elements loaded as one (16-byte, for V = 16 / sizeof(T)) transaction.
template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

// The double-buffered tile loader of one thread (V > 1): V-element vectors of padded_rows × kTile, registers
// between the load of tile k + 1 and its store to shared memory. Lanes of a warp spread over kLanesPerRow
// consecutive vectors of 32 / kLanesPerRow rows (banks: 32 for float tiles, 16 eight-byte banks per half-warp for
// double tiles, so kLanesPerRow·V = banks and the lanes' first elements fall in distinct banks).
template <typename scalar_t, typename acc_t, int V>
struct TileLoader {
  static constexpr int kTile = tile_len<acc_t>();
  static constexpr int kBanks = sizeof(acc_t) == 8 ? 16 : 32;
  static constexpr int kLanesPerRow = kBanks / V;  // 8 (float or double tiles) or 4 (half inputs)
  static constexpr int kRowsPerItem = 32 / kLanesPerRow;
  static constexpr int kVecGroups = kTile / V / kLanesPerRow;  // items along a row
  static constexpr int kMaxItems = (kMaxRows / kRowsPerItem) * kVecGroups;
  static constexpr int kPerWarp = (kMaxItems + kWarps - 1) / kWarps;  // items (vectors) per thread, at most

  Vec<scalar_t, V> buf[kPerWarp];

  // Row and first position (within the tile) of the k-th vector of this thread; row < 0 when there is none.
  __device__ __forceinline__ void coords(int k, int padded_rows, int* row, int* t) const {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int item = warp + k * kWarps;
    const int groups = (padded_rows + kRowsPerItem - 1) / kRowsPerItem * kVecGroups;
    const int r = (item / kVecGroups) * kRowsPerItem + lane / kLanesPerRow;
    *row = item < groups && r < padded_rows ? r : -1;
    *t = ((item % kVecGroups) * kLanesPerRow + lane % kLanesPerRow) * V;
  }

  // Issues the loads of the tile at positions [t0, t0 + w) (rows ≥ m + n and positions ≥ w are not read).
  __device__ __forceinline__ void load(const scalar_t* s, const scalar_t* x, int m, int rows, int padded_rows,
                                       int64_t length, int64_t t0, int w) {
#pragma unroll
    for (int k = 0; k < kPerWarp; ++k) {
      int r, t;
      coords(k, padded_rows, &r, &t);
      if (r >= 0 && r < rows && t < w)
        buf[k] = *reinterpret_cast<const Vec<scalar_t, V>*>((r < m ? s + r * length : x + (r - m) * length) + t0 + t);
    }
  }

  // Writes the loaded tile (width w) into shared memory as acc_t, zeros for the padding row and past w.
  __device__ __forceinline__ void store(acc_t (*tile)[kTile + 1], int rows, int padded_rows, int w) const {
#pragma unroll
    for (int k = 0; k < kPerWarp; ++k) {
      int r, t;
      coords(k, padded_rows, &r, &t);
      if (r < 0) continue;
      const bool valid = r < rows && t < w;  // V divides w, so a vector is valid as a whole
#pragma unroll
      for (int i = 0; i < V; ++i) tile[r][t + i] = valid ? to_acc(buf[k].v[i], acc_t(0)) : acc_t(0);
    }
  }
};

// The current device's multiprocessor count, asked once per device (so a CUDA-graph capture makes no attribute
// query; cudaGetDevice is a host-side lookup).
int multiprocessors() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices];
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) return 132;
  int sms = cache[device].load(std::memory_order_relaxed);
  if (sms == 0) {
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || sms <= 0) sms = 132;
    cache[device].store(sms, std::memory_order_relaxed);
  }
  return sms;
}

int64_t chunk_length(int batch, int64_t length, int tile) {
  const int sms = multiprocessors();
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
// Writes the chunk's upper-triangle entries (i ≤ j < rows) to partial[(b·rows² + i·rows + j)·chunks + chunk]
// (each entry's chunks contiguous, for the reduce kernel's coalesced reads).
template <typename scalar_t, typename acc_t, int V>
__global__ void __launch_bounds__(kThreads, 2)  // ≤ 128 registers: two blocks per SM at least
partial_kernel(const scalar_t* __restrict__ est, const scalar_t* __restrict__ mix, int m, int n, int64_t length,
               int64_t chunk_len, double* __restrict__ partial) {
  constexpr int kTile = tile_len<acc_t>();
  __shared__ acc_t tile[kMaxRows][kTile + 1];  // +1: row r starts in bank r
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
  auto width = [&](int64_t t0) { return static_cast<int>(end - t0 < kTile ? end - t0 : kTile); };
  // Vector loads (V > 1) are double-buffered: the next tile's loads are in flight during the compute. The
  // element-wise fallback for unaligned rows (V = 1) loads and stores each tile in one loop, without a buffer.
  TileLoader<scalar_t, acc_t, V> loader;
  if constexpr (V > 1) loader.load(s, x, m, rows, padded_rows, length, begin, width(begin));
  for (int64_t t0 = begin; t0 < end; t0 += kTile) {
    const int w = width(t0);
    __syncthreads();  // the previous tile has been read
    if constexpr (V > 1) {
      loader.store(tile, rows, padded_rows, w);
    } else {
      for (int idx = tid; idx < padded_rows * kTile; idx += kThreads) {
        const int r = idx / kTile, t = idx % kTile;
        acc_t v = acc_t(0);
        if (r < rows && t < w) v = to_acc((r < m ? s + r * length : x + (r - m) * length)[t0 + t], acc_t(0));
        tile[r][t] = v;
      }
    }
    __syncthreads();
    if constexpr (V > 1) {
      if (t0 + kTile < end) loader.load(s, x, m, rows, padded_rows, length, t0 + kTile, width(t0 + kTile));
    }
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
  }
  if (active) {
    red[4 * tid + 0] = acc00;
    red[4 * tid + 1] = acc01;
    red[4 * tid + 2] = acc10;
    red[4 * tid + 3] = acc11;
  }
  __syncthreads();
  double* out = partial + static_cast<int64_t>(b) * rows * rows * chunks;
  for (int e = tid; e < 4 * blocks; e += kThreads) {
    const int k = e / 4, q = e % 4;
    int ki, kj;
    block_coords(k, nb, &ki, &kj);
    const int i = 2 * ki + q / 2, j = 2 * kj + q % 2;
    if (i > j || j >= rows) continue;  // lower half of a diagonal block, or the padding row
    double v = 0.0;
    for (int sl = 0; sl < slices; ++sl) v += red[4 * (sl * blocks + k) + q];  // item = slice·blocks + block
    out[static_cast<int64_t>(i * rows + j) * chunks + chunk] = v;
  }
}

// One warp per pair: lane l sums the chunks l, l + 32, ... in order, then a fixed shuffle tree adds the lanes
// (deterministic: the same order on every run), and lane 0 scatters the total into G, c, e.
__global__ void __launch_bounds__(kReduceWarps * 32)
reduce_kernel(const double* __restrict__ partial, int chunks, int m, int n, double* g, double* c, double* e) {
  const int lane = threadIdx.x % 32, b = blockIdx.y, rows = m + n;
  const int p = blockIdx.x * kReduceWarps + threadIdx.x / 32;
  if (p >= num_pairs(m, n)) return;  // whole warps leave together
  int i, j;
  pair_rows(p, m, n, &i, &j);  // i ≤ j
  const double* in = partial + (static_cast<int64_t>(b) * rows * rows + i * rows + j) * chunks;
  double v = 0.0;
  for (int k = lane; k < chunks; k += 32) v += in[k];
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (lane == 0)
    store_pair(p, m, n, v, g + static_cast<int64_t>(b) * m * m, c + static_cast<int64_t>(b) * m * n,
               e + static_cast<int64_t>(b) * n);
}

template <typename scalar_t, typename acc_t>
int launch(const void* est, const void* mix, int batch, int m, int n, int64_t length, void* g, void* c, void* e,
           void* workspace, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(scalar_t);
  const int64_t chunk_len = chunk_length(batch, length, tile_len<acc_t>());
  const int chunks = static_cast<int>((length + chunk_len - 1) / chunk_len);
  double* partial = static_cast<double*>(workspace);
  const auto* s = static_cast<const scalar_t*>(est);
  const auto* x = static_cast<const scalar_t*>(mix);
  const bool aligned = length % kVec == 0 && (reinterpret_cast<uintptr_t>(s) | reinterpret_cast<uintptr_t>(x)) % 16 == 0;
  if (aligned)
    partial_kernel<scalar_t, acc_t, kVec><<<dim3(chunks, batch), kThreads, 0, stream>>>(s, x, m, n, length, chunk_len,
                                                                                         partial);
  else
    partial_kernel<scalar_t, acc_t, 1><<<dim3(chunks, batch), kThreads, 0, stream>>>(s, x, m, n, length, chunk_len,
                                                                                      partial);
  const int pair_blocks = (num_pairs(m, n) + kReduceWarps - 1) / kReduceWarps;
  reduce_kernel<<<dim3(pair_blocks, batch), kReduceWarps * 32, 0, stream>>>(
      partial, chunks, m, n, static_cast<double*>(g), static_cast<double*>(c), static_cast<double*>(e));
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
