// CUDA glue of trackformer::mixit_search: checks, outputs on the input's device and stream, the plain launcher.
#ifdef TRACKFORMER_WITH_CUDA
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../common/alloc.h"
#include "search.h"
#include "search_check.h"

namespace trackformer {
namespace mixit {
namespace {

std::tuple<at::Tensor, at::Tensor> mixit_search_cuda(const at::Tensor& gram, const at::Tensor& cross,
                                                     const at::Tensor& energy, double tau) {
  check_search_inputs(gram, cross, energy, tau);
  c10::cuda::CUDAGuard guard(gram.device());
  const int64_t b = cross.size(0), m = cross.size(1), n = cross.size(2);
  auto assignment = new_output({b, m}, gram.options().dtype(at::kLong));
  auto loss = new_output({b}, gram.options());
  C10_CUDA_CHECK(static_cast<cudaError_t>(trackformer_mixit_search_cuda(
      gram.data_ptr(), cross.data_ptr(), energy.data_ptr(), gram.scalar_type() == at::kDouble,
      static_cast<int>(b), static_cast<int>(m), static_cast<int>(n), tau, assignment.data_ptr<int64_t>(),
      loss.data_ptr(), c10::cuda::getCurrentCUDAStream().stream())));
  return {assignment, loss};
}

}  // namespace
}  // namespace mixit
}  // namespace trackformer

TORCH_LIBRARY_IMPL(trackformer, CUDA, m) { m.impl("mixit_search", &trackformer::mixit::mixit_search_cuda); }
#endif  // TRACKFORMER_WITH_CUDA
