// AVX2 + FMA tile kernels: queries against one stored vector, two at a time in registers
// (four 8-wide accumulators per query, as in the one-query kernel: 8 of the 16 ymm, plus the
// stored block). The stored vector is loaded once per pair and stays in L1 for the next.
// Compiled with -mavx2 -mfma, called only after the run-time check. Per query this is
// l2sq_avx2 / dot_avx2 (distance_avx2.cpp) step for step: four accumulators over 32-float
// blocks, 8-float steps into the first, a masked tail into the second, the same horizontal
// sum; so each distance is bit-for-bit the one-query kernel's (scan.h).
#include <immintrin.h>

#include "lakehouse/scan.h"
#include "avx2_common.h"

namespace lakehouse::detail {
namespace {

using avx2::hsum256;
using avx2::tail_mask;

template <bool L2>
inline __m256 step(__m256 q, __m256 x, __m256 s) {
  if constexpr (L2) {
    const __m256 d = _mm256_sub_ps(q, x);
    return _mm256_fmadd_ps(d, d, s);
  } else {
    return _mm256_fmadd_ps(q, x, s);
  }
}

template <std::size_t N, bool L2>
void tile(const float* const* q, const float* x, std::size_t n, float* out) {
  __m256 s[N][4];
  for (std::size_t t = 0; t < N; ++t) {
    for (auto& a : s[t]) a = _mm256_setzero_ps();
  }
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
    const __m256 x2 = _mm256_loadu_ps(x + i + 16), x3 = _mm256_loadu_ps(x + i + 24);
    for (std::size_t t = 0; t < N; ++t) {
      s[t][0] = step<L2>(_mm256_loadu_ps(q[t] + i), x0, s[t][0]);
      s[t][1] = step<L2>(_mm256_loadu_ps(q[t] + i + 8), x1, s[t][1]);
      s[t][2] = step<L2>(_mm256_loadu_ps(q[t] + i + 16), x2, s[t][2]);
      s[t][3] = step<L2>(_mm256_loadu_ps(q[t] + i + 24), x3, s[t][3]);
    }
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 xi = _mm256_loadu_ps(x + i);
    for (std::size_t t = 0; t < N; ++t) s[t][0] = step<L2>(_mm256_loadu_ps(q[t] + i), xi, s[t][0]);
  }
  if (i < n) {
    const __m256i m = tail_mask(n - i);
    const __m256 xm = _mm256_maskload_ps(x + i, m);
    for (std::size_t t = 0; t < N; ++t) s[t][1] = step<L2>(_mm256_maskload_ps(q[t] + i, m), xm, s[t][1]);
  }
  for (std::size_t t = 0; t < N; ++t) {
    const float sum =
        hsum256(_mm256_add_ps(_mm256_add_ps(s[t][0], s[t][1]), _mm256_add_ps(s[t][2], s[t][3])));
    out[t] = L2 ? sum : 1.0f - sum;
  }
}

template <bool L2>
void pairs(const float* const* q, std::size_t n, const float* x, std::size_t dims, float* out) {
  std::size_t t = 0;
  for (; t + 2 <= n; t += 2) tile<2, L2>(q + t, x, dims, out + t);
  if (t < n) tile<1, L2>(q + t, x, dims, out + t);
}

}  // namespace

void l2sq_tile_avx2(const float* const* q, std::size_t n, const float* x, std::size_t dims, float* out) {
  pairs<true>(q, n, x, dims, out);
}

void ipd_tile_avx2(const float* const* q, std::size_t n, const float* x, std::size_t dims, float* out) {
  pairs<false>(q, n, x, dims, out);
}

}  // namespace lakehouse::detail
