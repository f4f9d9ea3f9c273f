// CPU kernel of trackformer::mixit_stats: tiled dot products of every needed row pair, examples in parallel.
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
constexpr int kLanes = 8;   // independent partial sums per dot product (vectorisable, order fixed by the source)

template <typename acc_t>
double dot(const acc_t* a, const acc_t* b, int len) {
  acc_t lane[kLanes] = {};
  for (int t = 0; t < len; t += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += a[t + l] * b[t + l];
  double s = 0.0;
  for (int l = 0; l < kLanes; ++l) s += static_cast<double>(lane[l]);
  return s;
}

// One example: tiles of [ŝ; x] converted to acc_t, per-tile lane sums in acc_t, tile totals in double.
template <typename scalar_t, typename acc_t>
void stats_example(const scalar_t* s, const scalar_t* x, int m, int n, int64_t len, acc_t* g, acc_t* c, acc_t* e) {
  const int rows = m + n, pairs = num_pairs(m, n);
  std::vector<int> pi(pairs), pj(pairs);
  for (int p = 0; p < pairs; ++p) pair_rows(p, m, n, &pi[p], &pj[p]);
  std::vector<acc_t> tile(static_cast<size_t>(rows) * kTile);
  std::vector<double> total(pairs, 0.0);
  for (int64_t t0 = 0; t0 < len; t0 += kTile) {
    const int w = static_cast<int>(std::min<int64_t>(kTile, len - t0));
    const int padded = (w + kLanes - 1) / kLanes * kLanes;
    for (int r = 0; r < rows; ++r) {
      const scalar_t* src = (r < m ? s + r * len : x + (r - m) * len) + t0;
      acc_t* dst = tile.data() + static_cast<size_t>(r) * kTile;
      for (int t = 0; t < w; ++t) dst[t] = static_cast<acc_t>(src[t]);
      std::fill(dst + w, dst + padded, acc_t(0));
    }
    for (int p = 0; p < pairs; ++p)
      total[p] += dot(tile.data() + static_cast<size_t>(pi[p]) * kTile,
                      tile.data() + static_cast<size_t>(pj[p]) * kTile, padded);
  }
  for (int p = 0; p < pairs; ++p) store_pair(p, m, n, total[p], g, c, e);
}

template <typename scalar_t, typename acc_t>
void stats_batch(const at::Tensor& est, const at::Tensor& mix, at::Tensor& g, at::Tensor& c, at::Tensor& e) {
  const int64_t batch = est.size(0), len = est.size(2);
  const int m = static_cast<int>(est.size(1)), n = static_cast<int>(mix.size(1));
  const scalar_t* s = est.data_ptr<scalar_t>();
  const scalar_t* x = mix.data_ptr<scalar_t>();
  acc_t *gp = g.data_ptr<acc_t>(), *cp = c.data_ptr<acc_t>(), *ep = e.data_ptr<acc_t>();
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
  const auto acc = est.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto opts = est.options().dtype(acc);
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
