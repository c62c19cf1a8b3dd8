// Helpers of the AVX2 kernels (distance_avx2.cpp, scan_avx2.cpp), private to native/src.
// Include it only from a file compiled with -mavx2 -mfma. The horizontal sum's order is part
// of the bit-for-bit contract between the one-query and the tile kernels (scan.h): both use
// this one definition.
#pragma once

#include <immintrin.h>

#include <cstddef>

namespace lakehouse::detail::avx2 {

inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 sh = _mm_movehdup_ps(lo);
  __m128 s = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, s);
  s = _mm_add_ss(s, sh);
  return _mm_cvtss_f32(s);
}

// A load mask for the last rem (0..8) floats of a vector.
inline __m256i tail_mask(std::size_t rem) {
  alignas(32) static const int kMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask + 8 - rem));
}

}  // namespace lakehouse::detail::avx2
