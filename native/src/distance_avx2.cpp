// AVX2 + FMA kernels; this file alone is compiled with -mavx2 -mfma and is only called
// after the run-time check in distance.cpp. Four 8-wide accumulators hide FMA latency; the
// tail uses a masked load, so any dimension works without a scalar loop.
#include <immintrin.h>

#include "lakehouse/distance.h"
#include "avx2_common.h"

namespace lakehouse::detail {
using avx2::hsum256;
using avx2::tail_mask;

namespace {

// Squared L2, four accumulators over 32-float steps. kBounded: a look at the running sum
// every kBoundStride floats, returning it once it passes `bound` (l2sq_bounded); the sums
// are the same either way, so an answer that does not stop is the unbounded one bit for bit.
template <bool kBounded>
float l2sq_impl(const float* a, const float* b, std::size_t n, float bound) {
  static_assert(kBoundStride % 32 == 0, "the bound is checked between 32-float steps");
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
    __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
    __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));
    s0 = _mm256_fmadd_ps(d0, d0, s0);
    s1 = _mm256_fmadd_ps(d1, d1, s1);
    s2 = _mm256_fmadd_ps(d2, d2, s2);
    s3 = _mm256_fmadd_ps(d3, d3, s3);
    if (kBounded && (i + 32) % kBoundStride == 0) {
      const float partial = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
      if (partial > bound) return partial;
    }
  }
  for (; i + 8 <= n; i += 8) {
    __m256 d = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    s0 = _mm256_fmadd_ps(d, d, s0);
  }
  if (i < n) {
    const __m256i m = tail_mask(n - i);
    __m256 d = _mm256_sub_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m));
    s1 = _mm256_fmadd_ps(d, d, s1);
  }
  return hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

}  // namespace

float l2sq_avx2(const float* a, const float* b, std::size_t n) { return l2sq_impl<false>(a, b, n, 0.0f); }

float l2sq_bounded_avx2(const float* a, const float* b, std::size_t n, float bound) {
  return l2sq_impl<true>(a, b, n, bound);
}

float dot_avx2(const float* a, const float* b, std::size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  }
  if (i < n) {
    const __m256i m = tail_mask(n - i);
    s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), s1);
  }
  return hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

float ipd_avx2(const float* a, const float* b, std::size_t n) { return 1.0f - dot_avx2(a, b, n); }

}  // namespace lakehouse::detail
