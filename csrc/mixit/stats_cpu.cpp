// CPU kernel of trackformer::mixit_stats: tiled Gram of the rows [ŝ; x] in 2×2 blocks, examples in parallel.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../common/alloc.h"
#include "stats.h"
#include "stats_check.h"

namespace trackformer {
namespace mixit {
namespace {

constexpr int64_t kMinParallelWork = 1 << 20;
constexpr int kTile = 256;  // positions per tile: all rows of a tile stay in L1
constexpr int kVecBytes = 16;  // SSE/NEON width: GCC/Clang vector extensions, no target flags needed

// The 2×2 block of dot products (a0, a1) · (b0, b1) over len positions (len a multiple of the vector width):
// out = {a0·b0, a0·b1, a1·b0, a1·b1}. Four independent vector accumulators hide the add latency; each entry is
// summed in the same fixed order (per vector lane ascending in t, then the lanes in order into double), whatever
// its slot in the block or the rows' alignment, so duplicated rows give bitwise equal statistics.
template <typename acc_t>
void block_dot(const acc_t* a0, const acc_t* a1, const acc_t* b0, const acc_t* b1, int len, double* out) {
  typedef acc_t vec __attribute__((vector_size(kVecBytes)));
  constexpr int kWidth = kVecBytes / sizeof(acc_t);
  vec s00 = {}, s01 = {}, s10 = {}, s11 = {};
  for (int t = 0; t < len; t += kWidth) {
    vec x0, x1, y0, y1;
    __builtin_memcpy(&x0, a0 + t, kVecBytes);
    __builtin_memcpy(&x1, a1 + t, kVecBytes);
    __builtin_memcpy(&y0, b0 + t, kVecBytes);
    __builtin_memcpy(&y1, b1 + t, kVecBytes);
    s00 += x0 * y0;
    s01 += x0 * y1;
    s10 += x1 * y0;
    s11 += x1 * y1;
  }
  const vec* sums[4] = {&s00, &s01, &s10, &s11};
  for (int k = 0; k < 4; ++k) {
    double v = 0.0;
    for (int l = 0; l < kWidth; ++l) v += static_cast<double>((*sums[k])[l]);
    out[k] = v;
  }
}

// One example: tiles of [ŝ; x] (padded with a zero row to an even count) converted to acc_t; the upper triangle
// of their Gram in 2×2 blocks, per-tile sums in acc_t, tile totals in double; then the needed pairs (double).
template <typename scalar_t, typename acc_t>
void stats_example(const scalar_t* s, const scalar_t* x, int m, int n, int64_t len, double* g, double* c, double* e) {
  constexpr int kWidth = kVecBytes / sizeof(acc_t);
  const int rows = m + n, padded_rows = (rows + 1) & ~1, nb = padded_rows / 2;
  std::vector<acc_t> tile(static_cast<size_t>(padded_rows) * kTile, acc_t(0));
  std::vector<double> gram(static_cast<size_t>(padded_rows) * padded_rows, 0.0);
  for (int64_t t0 = 0; t0 < len; t0 += kTile) {
    const int w = static_cast<int>(std::min<int64_t>(kTile, len - t0));
    const int padded = (w + kWidth - 1) / kWidth * kWidth;
    for (int r = 0; r < rows; ++r) {
      const scalar_t* src = (r < m ? s + r * len : x + (r - m) * len) + t0;
      acc_t* dst = tile.data() + static_cast<size_t>(r) * kTile;
      for (int t = 0; t < w; ++t) dst[t] = static_cast<acc_t>(src[t]);
      std::fill(dst + w, dst + padded, acc_t(0));
    }
    for (int bi = 0; bi < nb; ++bi) {
      const acc_t* a0 = tile.data() + static_cast<size_t>(2 * bi) * kTile;
      for (int bj = bi; bj < nb; ++bj) {
        const acc_t* b0 = tile.data() + static_cast<size_t>(2 * bj) * kTile;
        double out[4];
        block_dot(a0, a0 + kTile, b0, b0 + kTile, padded, out);
        double* row0 = gram.data() + static_cast<size_t>(2 * bi) * padded_rows + 2 * bj;
        row0[0] += out[0];
        row0[1] += out[1];
        row0[padded_rows] += out[2];
        row0[padded_rows + 1] += out[3];
      }
    }
  }
  for (int p = 0; p < num_pairs(m, n); ++p) {
    int i, j;
    pair_rows(p, m, n, &i, &j);  // i ≤ j
    store_pair(p, m, n, gram[static_cast<size_t>(i) * padded_rows + j], g, c, e);
  }
}

template <typename scalar_t, typename acc_t>
void stats_batch(const at::Tensor& est, const at::Tensor& mix, at::Tensor& g, at::Tensor& c, at::Tensor& e) {
  const int64_t batch = est.size(0), len = est.size(2);
  const int m = static_cast<int>(est.size(1)), n = static_cast<int>(mix.size(1));
  const scalar_t* s = est.data_ptr<scalar_t>();
  const scalar_t* x = mix.data_ptr<scalar_t>();
  double *gp = g.data_ptr<double>(), *cp = c.data_ptr<double>(), *ep = e.data_ptr<double>();
  // Examples in parallel only when each thread gets enough multiply-adds to outweigh waking the pool.
  const int64_t work = std::max<int64_t>(1, len * num_pairs(m, n));
  const int64_t grain = std::max<int64_t>(1, kMinParallelWork / work);
  at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b)
      stats_example<scalar_t, acc_t>(s + b * m * len, x + b * n * len, m, n, len, gp + b * m * m, cp + b * m * n,
                                     ep + b * n);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mixit_stats_cpu(const at::Tensor& est, const at::Tensor& mix) {
  check_stats_inputs(est, mix);
  const int64_t b = est.size(0), m = est.size(1), n = mix.size(1);
  auto opts = est.options().dtype(at::kDouble);  // accumulated in double: returned without rounding
  auto g = new_output({b, m, m}, opts), c = new_output({b, m, n}, opts), e = new_output({b, n}, opts);
  switch (est.scalar_type()) {
    case at::kDouble: stats_batch<double, double>(est, mix, g, c, e); break;
    case at::kFloat: stats_batch<float, float>(est, mix, g, c, e); break;
    case at::kHalf: stats_batch<c10::Half, float>(est, mix, g, c, e); break;
    default: stats_batch<c10::BFloat16, float>(est, mix, g, c, e); break;
  }
  return {g, c, e};
}

}  // namespace
}  // namespace mixit
}  // namespace trackformer

TORCH_LIBRARY_IMPL(trackformer, CPU, m) { m.impl("mixit_stats", &trackformer::mixit::mixit_stats_cpu); }
