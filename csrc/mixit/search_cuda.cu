// CUDA kernel of trackformer::mixit_search (plain CUDA, no torch): one block per example; the block rounds the
// statistics to the fixed-point grid in shared memory, each thread walks a contiguous range of assignment indices
// with O(M) exact updates per step (search.h's Walker2 for N = 2, registers only; Walker otherwise), and a
// shared-memory arg-min (lowest index on ties) picks the winner.
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "search.h"

namespace {

using namespace trackformer::mixit;

constexpr int kThreads = 1024;  // one block per example: many warps hide the walkers' local-memory latency

__device__ double load(const float* p, int i) { return static_cast<double>(p[i]); }
__device__ double load(const double* p, int i) { return p[i]; }

template <typename T>
__global__ void __launch_bounds__(kThreads)
search_kernel(const T* __restrict__ g, const T* __restrict__ c, const T* __restrict__ e, int m, int n, double tau,
              int64_t total, int64_t* __restrict__ assignment, T* __restrict__ loss) {
  __shared__ int64_t gq[kMaxEstimates * kMaxEstimates], cq[kMaxEstimates * kMaxEstimates], eq[kMaxEstimates];
  __shared__ double floor_n[kMaxEstimates];
  __shared__ double red_max[kThreads];
  __shared__ int red_exp[kThreads];
  __shared__ double red_mant[kThreads];
  __shared__ int64_t red_k[kThreads];
  const int tid = threadIdx.x, b = blockIdx.x;
  g += static_cast<int64_t>(b) * m * m;
  c += static_cast<int64_t>(b) * m * n;
  e += static_cast<int64_t>(b) * n;

  // Largest |statistic| and finiteness, then the fixed-point copies.
  double mx = 0.0;
  bool ok = true;
  for (int i = tid; i < m * m + m * n + n; i += kThreads) {
    double v = i < m * m ? load(g, i) : i < m * m + m * n ? load(c, i - m * m) : load(e, i - m * m - m * n);
    ok = ok && is_finite(v);
    mx = fmax(mx, fabs(v));
  }
  red_max[tid] = mx;
  ok = __syncthreads_and(ok);
  if (!ok) {
    if (tid < m) assignment[static_cast<int64_t>(b) * m + tid] = 0;
    if (tid == 0) loss[b] = static_cast<T>(nan(""));
    return;
  }
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (tid < s) red_max[tid] = fmax(red_max[tid], red_max[tid + s]);
    __syncthreads();
  }
  const int q = fixed_point_exponent(red_max[0]);
  for (int i = tid; i < m * m; i += kThreads) gq[i] = to_fixed(load(g, i), q);
  for (int i = tid; i < m * n; i += kThreads) cq[i] = to_fixed(load(c, i), q);
  if (tid < n) {
    eq[tid] = to_fixed(load(e, tid), q);
    floor_n[tid] = error_floor(tau, load(e, tid));
  }
  __syncthreads();

  // Each thread: indices [k0, k1), ascending, keeping the first strict minimum.
  const int64_t per_thread = (total + kThreads - 1) / kThreads;
  const int64_t k0 = tid * per_thread, k1 = k0 + per_thread < total ? k0 + per_thread : total;
  Score best{INT_MAX, 1.0};
  int64_t best_k = INT64_MAX;
  if (k0 < k1) {
    if (n == 2) {
      Walker2 w{m, gq, cq};
      walk_range(w, eq, floor_n, q, k0, k1, &best, &best_k);
    } else {
      Walker w{m, n, gq, cq};
      walk_range(w, eq, floor_n, q, k0, k1, &best, &best_k);
    }
  }
  red_exp[tid] = best.exp;
  red_mant[tid] = best.mant;
  red_k[tid] = best_k;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (tid < s) {
      Score other{red_exp[tid + s], red_mant[tid + s]};
      if (better(other, red_k[tid + s], Score{red_exp[tid], red_mant[tid]}, red_k[tid])) {
        red_exp[tid] = other.exp;
        red_mant[tid] = other.mant;
        red_k[tid] = red_k[tid + s];
      }
    }
    __syncthreads();
  }
  if (tid == 0) {
    int64_t* labels = assignment + static_cast<int64_t>(b) * m;
    Walker2 w2{m, gq, cq};
    Walker w{m, n, gq, cq};
    const double value =
        n == 2 ? winner(w2, red_k[0], eq, floor_n, q, labels) : winner(w, red_k[0], eq, floor_n, q, labels);
    loss[b] = static_cast<T>(value);
  }
}

}  // namespace

extern "C" int trackformer_mixit_search_cuda(const void* g, const void* c, const void* e, int stats_double, int batch,
                                             int m, int n, double tau, int64_t* assignment, void* loss,
                                             cudaStream_t stream) {
  const int64_t total = num_assignments(m, n);
  if (batch == 0) return static_cast<int>(cudaSuccess);
  if (stats_double)
    search_kernel<double><<<batch, kThreads, 0, stream>>>(static_cast<const double*>(g),
                                                           static_cast<const double*>(c),
                                                           static_cast<const double*>(e), m, n, tau, total,
                                                           assignment, static_cast<double*>(loss));
  else
    search_kernel<float><<<batch, kThreads, 0, stream>>>(static_cast<const float*>(g), static_cast<const float*>(c),
                                                         static_cast<const float*>(e), m, n, tau, total, assignment,
                                                         static_cast<float*>(loss));
  return static_cast<int>(cudaGetLastError());
}
