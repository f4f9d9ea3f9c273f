// MixIT exhaustive assignment search: plain C++/CUDA (no torch), shared by the CPU and CUDA kernels.
//
// Inputs per example: G (M×M) = ŝŝᵀ, c (M×N) = ŝxᵀ, e (N) = ‖x_n‖², row-major, float or double.
// An assignment sends estimate m to mixture A_m ∈ [0, N); its index is k = Σ_m A_m·N^m (estimate 0 is the least
// significant base-N digit). The search minimises
//     (1/N) Σ_n 10·log10(max(err_n, 0) + τ·e_n + 1e-8),  err_n = e_n − 2 Σ_{A_m=n} c_mn + Σ_{A_m=A_m'=n} G_mm'
// over all N^M assignments and keeps the LOWEST index among exact ties.
//
// Determinism: the statistics are rounded once to a per-example fixed-point grid (the largest |statistic| maps
// below 2^52, so the grid step is ≤ 2^-52 of it), after which every err_n is an exact int64 sum, the same in any
// order and for incremental updates. The objective is compared as the product Π_n (err_n·2^-q + τ·e_n + 1e-8),
// held as (exponent, mantissa) with frexp after each correctly rounded multiply, so no overflow and no
// transcendental functions enter the comparison: given bitwise equal statistics, the CPU and CUDA kernels return
// identical assignments (their losses, from each device's log10, may differ in the last bits). Built without fast
// math and with -ffp-contract=off on the host (setup.py), so no flush-to-zero or contraction changes a rounding.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define TF_HD __host__ __device__ __forceinline__
#else
#define TF_HD inline
#endif

typedef struct CUstream_st* cudaStream_t;  // the CUDA runtime's own definition, without its headers

namespace trackformer {
namespace mixit {

constexpr int kMaxEstimates = 16;
constexpr int64_t kMaxAssignments = int64_t(1) << 26;  // N^M limit: 3^16 = 43M fits, 4^16 does not
constexpr double kEps = 1e-8;

// N^M, or -1 when it exceeds kMaxAssignments.
TF_HD int64_t num_assignments(int m, int n) {
  int64_t k = 1;
  for (int i = 0; i < m; ++i) {
    k *= n;
    if (k > kMaxAssignments) return -1;
  }
  return k;
}

// The exponent q with max_abs·2^q < 2^52 (0 for an all-zero example).
TF_HD int fixed_point_exponent(double max_abs) {
  if (!(max_abs > 0.0)) return 0;
  int ex;
  frexp(max_abs, &ex);  // max_abs < 2^ex
  return 52 - ex;
}

TF_HD int64_t to_fixed(double v, int q) { return llrint(ldexp(v, q)); }

// floor_n = τ·e_n + 1e-8 without fused multiply-add, so host and device round alike.
TF_HD double error_floor(double tau, double e) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(__dmul_rn(tau, e), kEps);
#else
  double t = tau * e;  // x86-64 without -mfma: no contraction
  return t + kEps;
#endif
}

TF_HD bool is_finite(double v) {
#ifdef __CUDA_ARCH__
  return isfinite(v);
#else
  return std::isfinite(v);
#endif
}

// Objective Π_n v_n as mantissa in [0.5, 1) times 2^exp; smaller is better.
struct Score {
  int exp;
  double mant;
};

TF_HD bool better(const Score& a, int64_t ka, const Score& b, int64_t kb) {
  if (a.exp != b.exp) return a.exp < b.exp;
  if (a.mant != b.mant) return a.mant < b.mant;
  return ka < kb;
}

// v_n = max(err_n, 0)·2^-q + floor_n.
TF_HD double error_value(int64_t err, int q, double floor) {
  double v = ldexp(static_cast<double>(err > 0 ? err : 0), -q);
#ifdef __CUDA_ARCH__
  return __dadd_rn(v, floor);
#else
  return v + floor;
#endif
}

// frexp for a positive normal double (v = mant·2^exp, mant in [0.5, 1)), by its bits: exact, no library call.
TF_HD double split_normal(double v, int* exp) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  *exp = static_cast<int>((bits >> 52) & 0x7ff) - 1022;
  bits = (bits & 0x800fffffffffffffull) | (uint64_t(1022) << 52);
  memcpy(&v, &bits, sizeof bits);
  return v;
}

// Every v_n ≥ 1e-8 and every partial product of mantissas lies in [2^-2, 1): all positive normal doubles.
TF_HD Score score(const int64_t* err, const double* floor, int n, int q) {
  Score s{0, 1.0};
  for (int i = 0; i < n; ++i) {
    int ev, es;
    double mv = split_normal(error_value(err[i], q, floor[i]), &ev);
    s.mant = split_normal(s.mant * mv, &es);
    s.exp += ev + es;
  }
  return s;
}

TF_HD int lowest_bit(uint32_t x) {
#ifdef __CUDA_ARCH__
  return __ffs(static_cast<int>(x)) - 1;
#else
  return __builtin_ctz(x);
#endif
}

// Enumeration state of one thread: labels A_m, member masks of each mixture and the exact errors err_n.
// g (M×M), c (M×N), e (N) are the fixed-point statistics.
struct Walker {
  int m, n;
  const int64_t* g;
  const int64_t* c;
  int label[kMaxEstimates];
  uint32_t mask[kMaxEstimates];
  int64_t err[kMaxEstimates];

  // Starts at assignment index k, computing err directly (O(M²)).
  TF_HD void start(int64_t k, const int64_t* e) {
    for (int i = 0; i < n; ++i) {
      mask[i] = 0;
      err[i] = e[i];
    }
    for (int i = 0; i < m; ++i) {
      label[i] = static_cast<int>(k % n);
      k /= n;
      mask[label[i]] |= 1u << i;
    }
    for (int i = 0; i < m; ++i) {
      int a = label[i];
      err[a] -= 2 * c[i * n + a];
      for (int j = 0; j < m; ++j)
        if (label[j] == a) err[a] += g[i * m + j];
    }
  }

  TF_HD int64_t row_sum(int i, uint32_t members) const {
    int64_t s = 0;
    for (uint32_t b = members; b; b &= b - 1) s += g[i * m + lowest_bit(b)];
    return s;
  }

  // Moves estimate i from its mixture to mixture `to`, updating the two errors exactly (O(M)).
  TF_HD void move(int i, int to) {
    int from = label[i];
    uint32_t bit = 1u << i;
    mask[from] &= ~bit;
    err[from] -= 2 * row_sum(i, mask[from]) + g[i * m + i] - 2 * c[i * n + from];
    err[to] += 2 * row_sum(i, mask[to]) + g[i * m + i] - 2 * c[i * n + to];
    mask[to] |= bit;
    label[i] = to;
  }

  // Advances to index k + 1 (base-N increment: digit 0 changes every step).
  TF_HD void next() {
    for (int i = 0; i < m; ++i) {
      if (label[i] + 1 < n) {
        move(i, label[i] + 1);
        return;
      }
      move(i, 0);
    }
  }

  TF_HD Score score_at(const double* floor, int q) const { return score(err, floor, n, q); }
  TF_HD int label_of(int i) const { return label[i]; }
  TF_HD double loss_at(const double* floor, int q) const;
};

// N = 2, the common case: the labels are the bits of the index itself and both errors stay in registers.
struct Walker2 {
  int m;
  const int64_t* g;
  const int64_t* c;  // M×2
  uint32_t ones;     // estimates sent to mixture 1
  int64_t err0, err1;

  TF_HD uint32_t all() const { return (1u << m) - 1; }

  TF_HD int64_t row_sum(int i, uint32_t members) const {
    int64_t s = 0;
    for (uint32_t b = members; b; b &= b - 1) s += g[i * m + lowest_bit(b)];
    return s;
  }

  TF_HD void start(int64_t k, const int64_t* e) {
    ones = static_cast<uint32_t>(k);
    err0 = e[0];
    err1 = e[1];
    for (int i = 0; i < m; ++i) {
      if ((ones >> i) & 1u)
        err1 += row_sum(i, ones) - 2 * c[i * 2 + 1];
      else
        err0 += row_sum(i, all() & ~ones) - 2 * c[i * 2];
    }
  }

  // Sends estimate i to the other mixture, updating both errors exactly (O(M)).
  TF_HD void flip(int i) {
    const uint32_t bit = 1u << i;
    const int64_t gii = g[i * m + i];
    const uint32_t zeros = all() & ~ones & ~bit;  // mixture 0 without i
    if (ones & bit) {
      ones &= ~bit;
      err1 -= 2 * row_sum(i, ones) + gii - 2 * c[i * 2 + 1];
      err0 += 2 * row_sum(i, zeros) + gii - 2 * c[i * 2];
    } else {
      err0 -= 2 * row_sum(i, zeros) + gii - 2 * c[i * 2];
      err1 += 2 * row_sum(i, ones) + gii - 2 * c[i * 2 + 1];
      ones |= bit;
    }
  }

  // Advances to index k + 1 (binary increment).
  TF_HD void next() {
    for (int i = 0; i < m; ++i) {
      const bool was_one = (ones >> i) & 1u;
      flip(i);
      if (!was_one) return;
    }
  }

  TF_HD Score score_at(const double* floor, int q) const {
    const int64_t err[2] = {err0, err1};
    return score(err, floor, 2, q);
  }
  TF_HD int label_of(int i) const { return static_cast<int>((ones >> i) & 1u); }
  TF_HD double loss_at(const double* floor, int q) const;
};

// The best index over the positions [k0, k1) (k0 < k1) of w's enumeration order: the lowest score, and the lowest
// index among equal scores (so the result does not depend on the order of the walk).
template <class W>
TF_HD void walk_range(W& w, const int64_t* e, const double* floor, int q, int64_t k0, int64_t k1, Score* best,
                      int64_t* best_k) {
  w.start(k0, e);
  *best = w.score_at(floor, q);
  *best_k = k0;
  for (int64_t k = k0 + 1; k < k1; ++k) {
    w.next();
    const Score s = w.score_at(floor, q);
    if (better(s, k, *best, *best_k)) {
      *best = s;
      *best_k = k;
    }
  }
}

// N = 2: visits the indices in binary-reflected Gray-code order, gray(i) = i ^ (i >> 1), which flips one estimate
// per step (ascending order flips two on average).
TF_HD void walk_range(Walker2& w, const int64_t* e, const double* floor, int q, int64_t k0, int64_t k1, Score* best,
                      int64_t* best_k) {
  w.start(k0 ^ (k0 >> 1), e);
  *best = w.score_at(floor, q);
  *best_k = k0 ^ (k0 >> 1);
  for (int64_t i = k0 + 1; i < k1; ++i) {
    w.flip(lowest_bit(static_cast<uint32_t>(i)));
    const int64_t k = i ^ (i >> 1);
    const Score s = w.score_at(floor, q);
    if (better(s, k, *best, *best_k)) {
      *best = s;
      *best_k = k;
    }
  }
}


// Rounds one example's statistics to the fixed-point grid (outputs: gq M×M, cq M×N, eq N, floor N, returns q).
// Returns false when a statistic is not finite.
template <typename T>
TF_HD bool quantize(const T* g, const T* c, const T* e, int m, int n, double tau, int64_t* gq, int64_t* cq,
                    int64_t* eq, double* floor, int* q) {
  double mx = 0.0;
  bool ok = true;
  for (int i = 0; i < m * m; ++i) {
    double v = static_cast<double>(g[i]);
    ok = ok && is_finite(v);
    mx = fmax(mx, fabs(v));
  }
  for (int i = 0; i < m * n; ++i) {
    double v = static_cast<double>(c[i]);
    ok = ok && is_finite(v);
    mx = fmax(mx, fabs(v));
  }
  for (int i = 0; i < n; ++i) {
    double v = static_cast<double>(e[i]);
    ok = ok && is_finite(v);
    mx = fmax(mx, fabs(v));
  }
  if (!ok) return false;
  *q = fixed_point_exponent(mx);
  for (int i = 0; i < m * m; ++i) gq[i] = to_fixed(static_cast<double>(g[i]), *q);
  for (int i = 0; i < m * n; ++i) cq[i] = to_fixed(static_cast<double>(c[i]), *q);
  for (int i = 0; i < n; ++i) {
    eq[i] = to_fixed(static_cast<double>(e[i]), *q);
    floor[i] = error_floor(tau, static_cast<double>(e[i]));
  }
  return true;
}

// (1/N) Σ_n 10·log10(v_n) of the errors err (N).
TF_HD double loss_db(const int64_t* err, const double* floor, int n, int q) {
  double s = 0.0;
  for (int i = 0; i < n; ++i) s += log10(error_value(err[i], q, floor[i]));
  return 10.0 * s / n;
}

TF_HD double Walker::loss_at(const double* floor, int q) const { return loss_db(err, floor, n, q); }

TF_HD double Walker2::loss_at(const double* floor, int q) const {
  const int64_t err[2] = {err0, err1};
  return loss_db(err, floor, 2, q);
}

// Writes the labels (M) of index k and returns its loss.
template <class W>
TF_HD double winner(W& w, int64_t k, const int64_t* e, const double* floor, int q, int64_t* labels) {
  w.start(k, e);
  for (int i = 0; i < w.m; ++i) labels[i] = w.label_of(i);
  return w.loss_at(floor, q);
}

}  // namespace mixit
}  // namespace trackformer

// CUDA search over a batch (search_cuda.cu). stats_double: G/c/e/loss are double (else float).
// Writes assignment (B×M int64 labels) and loss (B); an example with a non-finite statistic gets labels 0 and a
// NaN loss. Returns a cudaError_t as int (0 on success).
extern "C" int trackformer_mixit_search_cuda(const void* g, const void* c, const void* e, int stats_double, int batch,
                                             int m, int n, double tau, int64_t* assignment, void* loss,
                                             cudaStream_t stream);
