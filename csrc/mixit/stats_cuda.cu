// CUDA kernels of trackformer::mixit_stats (plain CUDA, no torch): one pass over the estimates and mixtures.
//
// Why not a (split-K) batched matmul: G, c, e are a (M+N)² Gram over a very long K = C·T, which cuBLAS handles
// poorly (shared/ANCHORS.md: plain bmm 19.5 ms at 30 s), and a split-K by hand still launches several kernels and
// needs fp32 partials for fp16/bf16 inputs. Here each block reads one chunk of T for all M + N rows of one example
// exactly once into shared memory (converted to float, or double for float64), computes the dot products of the
// needed row pairs from there, and writes one partial per pair; a second tiny kernel sums the chunks in a fixed
// order (deterministic, no atomics) and scatters them into G, c, e. Global traffic ≈ one read of the inputs.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "stats.h"

namespace {

using namespace trackformer::mixit;

constexpr int kThreads = 256;
constexpr int kMaxRows = 32;       // M + N ≤ 16 + 16
constexpr int kMaxItems = 3;       // (pair, slice) work items per thread: num_pairs ≤ 528 ≤ 3·kThreads
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

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
partial_kernel(const scalar_t* __restrict__ est, const scalar_t* __restrict__ mix, int m, int n, int64_t length,
               int64_t chunk_len, double* __restrict__ partial) {
  constexpr int kTile = tile_len<acc_t>();
  __shared__ acc_t tile[kMaxRows][kTile + 1];  // +1: rows start in different banks
  __shared__ double red[kMaxItems * kThreads];
  const int tid = threadIdx.x, chunk = blockIdx.x, b = blockIdx.y, chunks = gridDim.x;
  const int rows = m + n, pairs = num_pairs(m, n);
  const int slices = pairs < kThreads ? kThreads / pairs : 1, items = pairs * slices;
  const scalar_t* s = est + static_cast<int64_t>(b) * m * length;
  const scalar_t* x = mix + static_cast<int64_t>(b) * n * length;

  int pi[kMaxItems], pj[kMaxItems], slice[kMaxItems];
  double acc[kMaxItems];
#pragma unroll
  for (int r = 0; r < kMaxItems; ++r) {
    const int item = tid + r * kThreads;
    acc[r] = 0.0;
    slice[r] = item / pairs;
    pi[r] = pj[r] = 0;
    if (item < items) pair_rows(item % pairs, m, n, &pi[r], &pj[r]);
  }
  const int64_t begin = chunk * chunk_len;
  const int64_t end = begin + chunk_len < length ? begin + chunk_len : length;
  for (int64_t t0 = begin; t0 < end; t0 += kTile) {
    const int w = static_cast<int>(end - t0 < kTile ? end - t0 : kTile);
    for (int idx = tid; idx < rows * kTile; idx += kThreads) {
      const int r = idx / kTile, t = idx % kTile;
      const scalar_t* src = r < m ? s + r * length : x + (r - m) * length;
      tile[r][t] = t < w ? to_acc(src[t0 + t], acc_t(0)) : acc_t(0);
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kMaxItems; ++r) {
      if (tid + r * kThreads < items) {
        acc_t sum = 0;
        for (int t = slice[r]; t < w; t += slices) sum += tile[pi[r]][t] * tile[pj[r]][t];
        acc[r] += static_cast<double>(sum);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < kMaxItems; ++r)
    if (tid + r * kThreads < items) red[tid + r * kThreads] = acc[r];
  __syncthreads();
  double* out = partial + (static_cast<int64_t>(b) * chunks + chunk) * pairs;
  for (int p = tid; p < pairs; p += kThreads) {
    double v = 0.0;
    for (int sl = 0; sl < slices; ++sl) v += red[sl * pairs + p];
    out[p] = v;
  }
}

template <typename out_t>
__global__ void __launch_bounds__(kThreads)
reduce_kernel(const double* __restrict__ partial, int chunks, int m, int n, out_t* g, out_t* c, out_t* e) {
  const int b = blockIdx.x, pairs = num_pairs(m, n);
  const double* in = partial + static_cast<int64_t>(b) * chunks * pairs;
  for (int p = threadIdx.x; p < pairs; p += kThreads) {
    double v = 0.0;
    for (int k = 0; k < chunks; ++k) v += in[static_cast<int64_t>(k) * pairs + p];
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
  return static_cast<int64_t>(batch) * ((length + chunk_len - 1) / chunk_len) * num_pairs(m, n) *
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
