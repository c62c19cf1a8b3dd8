// AVX-512F kernels; compiled with -mavx512f -mfma and only called after the run-time check.
// Masked loads handle the tail in one step.
#include <immintrin.h>

#include "lakehouse/distance.h"

namespace lakehouse::detail {

namespace {

// Squared L2, two accumulators over 32-float steps; kBounded as in distance_avx2.cpp.
template <bool kBounded>
float l2sq_impl(const float* a, const float* b, std::size_t n, float bound) {
  static_assert(kBoundStride % 32 == 0, "the bound is checked between 32-float steps");
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
    __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
    s0 = _mm512_fmadd_ps(d0, d0, s0);
    s1 = _mm512_fmadd_ps(d1, d1, s1);
    if (kBounded && (i + 32) % kBoundStride == 0) {
      const float partial = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
      if (partial > bound) return partial;
    }
  }
  for (; i < n; i += 16) {
    const std::size_t rem = n - i;
    const __mmask16 m = rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1u);
    __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
    s0 = _mm512_fmadd_ps(d, d, s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

}  // namespace

float l2sq_avx512(const float* a, const float* b, std::size_t n) { return l2sq_impl<false>(a, b, n, 0.0f); }

float l2sq_bounded_avx512(const float* a, const float* b, std::size_t n, float bound) {
  return l2sq_impl<true>(a, b, n, bound);
}

float dot_avx512(const float* a, const float* b, std::size_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i < n; i += 16) {
    const std::size_t rem = n - i;
    const __mmask16 m = rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1u);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

float ipd_avx512(const float* a, const float* b, std::size_t n) {
  return 1.0f - dot_avx512(a, b, n);
}

}  // namespace lakehouse::detail
