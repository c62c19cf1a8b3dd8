// Portable kernels. Four independent accumulators let the compiler vectorise with the
// baseline ISA (SSE2 on x86-64) without -ffast-math.
#include "lakehouse/distance.h"

namespace lakehouse::detail {

namespace {

// Squared L2, four accumulators; kBounded as in distance_avx2.cpp.
template <bool kBounded>
float l2sq_impl(const float* a, const float* b, std::size_t n, float bound) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1];
    const float d2 = a[i + 2] - b[i + 2], d3 = a[i + 3] - b[i + 3];
    s0 += d0 * d0;
    s1 += d1 * d1;
    s2 += d2 * d2;
    s3 += d3 * d3;
    if (kBounded && (i + 4) % kBoundStride == 0) {
      const float partial = (s0 + s1) + (s2 + s3);
      if (partial > bound) return partial;
    }
  }
  for (; i < n; ++i) {
    const float d = a[i] - b[i];
    s0 += d * d;
  }
  return (s0 + s1) + (s2 + s3);
}

}  // namespace

float l2sq_scalar(const float* a, const float* b, std::size_t n) { return l2sq_impl<false>(a, b, n, 0.0f); }

float l2sq_bounded_scalar(const float* a, const float* b, std::size_t n, float bound) {
  return l2sq_impl<true>(a, b, n, bound);
}

float dot_scalar(const float* a, const float* b, std::size_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

float ipd_scalar(const float* a, const float* b, std::size_t n) {
  return 1.0f - dot_scalar(a, b, n);
}

}  // namespace lakehouse::detail
