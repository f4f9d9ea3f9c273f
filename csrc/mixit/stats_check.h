// Argument checks of trackformer::mixit_stats, shared by its CPU and CUDA glue (ValueError/TypeError in Python).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "search.h"

namespace trackformer {
namespace mixit {

inline void check_stats_inputs(const at::Tensor& est, const at::Tensor& mix) {
  TORCH_CHECK_VALUE(est.dim() == 3 && mix.dim() == 3, "mixit_stats: estimates must be (B, M, L) and mixtures "
                    "(B, N, L), got ", est.sizes(), " and ", mix.sizes());
  TORCH_CHECK_VALUE(est.size(0) == mix.size(0) && est.size(2) == mix.size(2), "mixit_stats: batch or length "
                    "differ: estimates ", est.sizes(), ", mixtures ", mix.sizes());
  TORCH_CHECK_VALUE(est.size(1) >= 1 && est.size(1) <= kMaxEstimates && mix.size(1) >= 1 &&
                        mix.size(1) <= kMaxEstimates, "mixit_stats: needs 1 <= M, N <= ", kMaxEstimates,
                    ", got M = ", est.size(1), ", N = ", mix.size(1));
  const auto t = est.scalar_type();
  TORCH_CHECK_TYPE(t == mix.scalar_type() && (t == at::kFloat || t == at::kDouble || t == at::kHalf ||
                                              t == at::kBFloat16),
                   "mixit_stats: estimates and mixtures must share one dtype of float32/float64/float16/bfloat16, "
                   "got ", est.scalar_type(), " and ", mix.scalar_type());
  TORCH_CHECK_VALUE(est.device() == mix.device(), "mixit_stats: estimates on ", est.device(), ", mixtures on ",
                    mix.device());
  TORCH_CHECK_VALUE(est.is_contiguous() && mix.is_contiguous(), "mixit_stats: inputs must be contiguous");
}

}  // namespace mixit
}  // namespace trackformer
