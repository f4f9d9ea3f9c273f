// MixIT statistics G = ŝŝᵀ (M×M), c = ŝxᵀ (M×N), e_n = ‖x_n‖² (N) of estimates ŝ (M×L) and mixtures x (N×L):
// plain C++/CUDA declarations shared by the CPU and CUDA kernels (no torch).
//
// The rows of [ŝ; x] are paired as: G's upper triangle (i ≤ j < M, row-major), then c (i < M, M + k for k < N),
// then e (M + k, M + k). Each pair's dot product is computed by the same code path whatever the rows' positions,
// so duplicated estimates give bitwise equal statistics (and exact ties in the search).
#pragma once

#include <cstdint>

#ifndef TF_HD
#ifdef __CUDACC__
#define TF_HD __host__ __device__ __forceinline__
#else
#define TF_HD inline
#endif
#endif

typedef struct CUstream_st* cudaStream_t;

namespace trackformer {
namespace mixit {

TF_HD int num_pairs(int m, int n) { return m * (m + 1) / 2 + m * n + n; }

// Rows (i, j) of pair p, 0 ≤ p < num_pairs(m, n).
TF_HD void pair_rows(int p, int m, int n, int* i, int* j) {
  const int tri = m * (m + 1) / 2;
  if (p < tri) {
    int r = 0;
    while (p >= m - r) {
      p -= m - r;
      ++r;
    }
    *i = r;
    *j = r + p;
  } else if (p < tri + m * n) {
    p -= tri;
    *i = p / n;
    *j = m + p % n;
  } else {
    *i = *j = m + (p - tri - m * n);
  }
}

// Writes pair value v of pair p into g (M×M, both triangles), c (M×N) or e (N).
template <typename T>
TF_HD void store_pair(int p, int m, int n, double v, T* g, T* c, T* e) {
  int i, j;
  pair_rows(p, m, n, &i, &j);
  if (j < m) {
    g[i * m + j] = static_cast<T>(v);
    g[j * m + i] = static_cast<T>(v);
  } else if (i < m) {
    c[i * n + (j - m)] = static_cast<T>(v);
  } else {
    e[i - m] = static_cast<T>(v);
  }
}

enum InputType { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

}  // namespace mixit
}  // namespace trackformer

// CUDA statistics over a batch (stats_cuda.cu): estimates (B×M×L) and mixtures (B×N×L) contiguous, of
// `input_type` (InputType); outputs g (B×M×M), c (B×M×N), e (B×N) float64.
// `workspace` must hold trackformer_mixit_stats_workspace(...) bytes. Returns a cudaError_t as int.
extern "C" int64_t trackformer_mixit_stats_workspace(int batch, int m, int n, int64_t length, int input_type);
extern "C" int trackformer_mixit_stats_cuda(const void* estimates, const void* mixtures, int input_type, int batch,
                                            int m, int n, int64_t length, void* g, void* c, void* e,
                                            void* workspace, cudaStream_t stream);
