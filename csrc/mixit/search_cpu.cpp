// CPU kernel of trackformer::mixit_search: exact enumeration of the N^M assignments, examples in parallel.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../common/alloc.h"
#include "search.h"
#include "search_check.h"

namespace trackformer {
namespace mixit {
namespace {

constexpr int64_t kMinParallelAssignments = 1 << 16;

// One example: all `total` indices in order, then the winner's labels and loss.
template <class W, typename T>
void search_example(W w, const int64_t* eq, const double* floor, int q, int64_t total, int64_t* labels, T* loss) {
  Score best;
  int64_t best_k;
  walk_range(w, eq, floor, q, 0, total, &best, &best_k);
  *loss = static_cast<T>(winner(w, best_k, eq, floor, q, labels));
}

template <typename T>
void search_batch(const at::Tensor& gram, const at::Tensor& cross, const at::Tensor& energy, double tau,
                  at::Tensor& assignment, at::Tensor& loss) {
  const int64_t batch = cross.size(0);
  const int m = static_cast<int>(cross.size(1)), n = static_cast<int>(cross.size(2));
  const int64_t total = num_assignments(m, n);
  const T* g = gram.data_ptr<T>();
  const T* c = cross.data_ptr<T>();
  const T* e = energy.data_ptr<T>();
  int64_t* labels = assignment.data_ptr<int64_t>();
  T* out = loss.data_ptr<T>();

  std::vector<char> finite(batch);
  // Examples in parallel only when each thread gets enough assignments to outweigh waking the pool.
  const int64_t grain = std::max<int64_t>(1, kMinParallelAssignments / total);
  at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
    int64_t gq[kMaxEstimates * kMaxEstimates], cq[kMaxEstimates * kMaxEstimates], eq[kMaxEstimates];
    double floor[kMaxEstimates];
    for (int64_t b = begin; b < end; ++b) {
      int q = 0;
      finite[b] = quantize(g + b * m * m, c + b * m * n, e + b * n, m, n, tau, gq, cq, eq, floor, &q);
      if (!finite[b]) continue;
      if (n == 2)
        search_example(Walker2{m, gq, cq}, eq, floor, q, total, labels + b * m, out + b);
      else
        search_example(Walker{m, n, gq, cq}, eq, floor, q, total, labels + b * m, out + b);
    }
  });
  for (int64_t b = 0; b < batch; ++b)
    TORCH_CHECK_VALUE(finite[b], "mixit_search: example ", b,
                      " has non-finite statistics: the estimates or mixtures contain NaN or inf, "
                      "or their energies overflow");
}

std::tuple<at::Tensor, at::Tensor> mixit_search_cpu(const at::Tensor& gram, const at::Tensor& cross,
                                                    const at::Tensor& energy, double tau) {
  check_search_inputs(gram, cross, energy, tau);
  auto assignment = new_output({cross.size(0), cross.size(1)}, gram.options().dtype(at::kLong));
  auto loss = new_output({cross.size(0)}, gram.options());
  if (gram.scalar_type() == at::kDouble)
    search_batch<double>(gram, cross, energy, tau, assignment, loss);
  else
    search_batch<float>(gram, cross, energy, tau, assignment, loss);
  return {assignment, loss};
}

}  // namespace
}  // namespace mixit
}  // namespace trackformer

TORCH_LIBRARY_IMPL(trackformer, CPU, m) { m.impl("mixit_search", &trackformer::mixit::mixit_search_cpu); }
