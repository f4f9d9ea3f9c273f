// Argument checks of trackformer::mixit_search, shared by its CPU and CUDA glue (ValueError/TypeError in Python).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>

#include "search.h"

namespace trackformer {
namespace mixit {

inline void check_search_inputs(const at::Tensor& gram, const at::Tensor& cross, const at::Tensor& energy,
                                double tau) {
  TORCH_CHECK_VALUE(cross.dim() == 3, "mixit_search: cross must be (B, M, N), got ", cross.sizes());
  const int64_t b = cross.size(0), m = cross.size(1), n = cross.size(2);
  TORCH_CHECK_VALUE(gram.dim() == 3 && gram.size(0) == b && gram.size(1) == m && gram.size(2) == m,
                    "mixit_search: gram must be (B, M, M) = (", b, ", ", m, ", ", m, "), got ", gram.sizes());
  TORCH_CHECK_VALUE(energy.dim() == 2 && energy.size(0) == b && energy.size(1) == n,
                    "mixit_search: energy must be (B, N) = (", b, ", ", n, "), got ", energy.sizes());
  TORCH_CHECK_VALUE(n >= 2 && n <= m && m <= kMaxEstimates, "mixit_search: needs 2 <= N <= M <= ", kMaxEstimates,
                    ", got M = ", m, ", N = ", n);
  TORCH_CHECK_VALUE(num_assignments(static_cast<int>(m), static_cast<int>(n)) > 0, "mixit_search: N^M = ", n, "^",
                    m, " assignments exceed the limit of ", kMaxAssignments);
  TORCH_CHECK_TYPE(gram.scalar_type() == cross.scalar_type() && gram.scalar_type() == energy.scalar_type() &&
                       (gram.scalar_type() == at::kFloat || gram.scalar_type() == at::kDouble),
                   "mixit_search: gram, cross and energy must all be float32 or all float64, got ",
                   gram.scalar_type(), ", ", cross.scalar_type(), ", ", energy.scalar_type());
  TORCH_CHECK_VALUE(gram.device() == cross.device() && gram.device() == energy.device(),
                    "mixit_search: gram, cross and energy must be on one device, got ", gram.device(), ", ",
                    cross.device(), ", ", energy.device());
  TORCH_CHECK_VALUE(gram.is_contiguous() && cross.is_contiguous() && energy.is_contiguous(),
                    "mixit_search: gram, cross and energy must be contiguous");
  TORCH_CHECK_VALUE(std::isfinite(tau) && tau >= 0.0, "mixit_search: tau must be finite and >= 0, got ", tau);
}

}  // namespace mixit
}  // namespace trackformer
