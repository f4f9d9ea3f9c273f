// CUDA glue of trackformer::mixit_stats: checks, outputs and workspace on the input's device, the plain launcher.
#ifdef TRACKFORMER_WITH_CUDA
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../common/alloc.h"
#include "stats.h"
#include "stats_check.h"

namespace trackformer {
namespace mixit {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> mixit_stats_cuda(const at::Tensor& est, const at::Tensor& mix) {
  check_stats_inputs(est, mix);
  TORCH_CHECK_VALUE(est.size(0) > 0 && est.size(2) > 0, "mixit_stats: empty inputs ", est.sizes());
  TORCH_CHECK_VALUE(est.size(0) <= 65535, "mixit_stats: at most 65535 examples per call on CUDA, got ", est.size(0));
  c10::cuda::CUDAGuard guard(est.device());
  const int64_t b = est.size(0), m = est.size(1), n = mix.size(1), len = est.size(2);
  int type = kFloat32;
  if (est.scalar_type() == at::kDouble) type = kFloat64;
  if (est.scalar_type() == at::kHalf) type = kFloat16;
  if (est.scalar_type() == at::kBFloat16) type = kBFloat16;
  auto opts = est.options().dtype(at::kDouble);  // accumulated in double: returned without rounding
  auto g = new_output({b, m, m}, opts), c = new_output({b, m, n}, opts), e = new_output({b, n}, opts);
  const int64_t bytes = trackformer_mixit_stats_workspace(static_cast<int>(b), static_cast<int>(m),
                                                          static_cast<int>(n), len, type);
  auto workspace = at::empty({bytes}, est.options().dtype(at::kByte));
  C10_CUDA_CHECK(static_cast<cudaError_t>(trackformer_mixit_stats_cuda(
      est.data_ptr(), mix.data_ptr(), type, static_cast<int>(b), static_cast<int>(m), static_cast<int>(n), len,
      g.data_ptr(), c.data_ptr(), e.data_ptr(), workspace.data_ptr(), c10::cuda::getCurrentCUDAStream().stream())));
  return {g, c, e};
}

}  // namespace
}  // namespace mixit
}  // namespace trackformer

TORCH_LIBRARY_IMPL(trackformer, CUDA, m) { m.impl("mixit_stats", &trackformer::mixit::mixit_stats_cuda); }
#endif  // TRACKFORMER_WITH_CUDA
