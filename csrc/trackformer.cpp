// The trackformer::* operator library and the Python module that loads it.
//
// Operator schemas are declared here, once; each op's CPU and CUDA kernels register their implementations
// with TORCH_LIBRARY_IMPL in their own files (csrc/<op>/...). Only light headers: this file compiles in seconds.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import trackformer._C` loads this shared library, which runs the static registrations below.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "trackformer compiled ops", -1, nullptr};
  return PyModule_Create(&module);
}
}

TORCH_LIBRARY(trackformer, m) {
  // MixIT: exhaustive search of the N^M assignments from the inner-product statistics (csrc/mixit/).
  // gram (B, M, M), cross (B, M, N), energy (B, N), float32 or float64; tau = 10^(-snr_max/10).
  // Returns the assignment (B, M) int64 (labels in [0, N), lowest index sum_m A_m N^m on ties) and its loss (B,).
  // estimates (B, M, L), mixtures (B, N, L), one floating dtype, contiguous (L = channels x time). Returns
  // gram (B, M, M), cross (B, M, N), energy (B, N) in float64 (accumulated in double), not differentiable.
  m.def("mixit_stats(Tensor estimates, Tensor mixtures) -> (Tensor, Tensor, Tensor)");
  m.def("mixit_search(Tensor gram, Tensor cross, Tensor energy, float tau) -> (Tensor, Tensor)");
}
