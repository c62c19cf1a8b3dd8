// AVX-512F tile kernels: up to kScanGroup queries against one stored vector, every
// accumulator in a register (2 per query + 2 for the stored vector: 18 of the 32 zmm).
// Compiled with -mavx512f -mfma, called only after the run-time check. Per query this is
// l2sq_avx512 / dot_avx512 (distance_avx512.cpp) step for step: two accumulators over
// 32-float blocks, a masked 16-float tail into the first, one reduce_add of their sum; so
// each distance is bit-for-bit the one-query kernel's (scan.h).
#include <immintrin.h>

#include "lakehouse/scan.h"

namespace lakehouse::detail {
namespace {

inline __mmask16 tail_mask(std::size_t rem) {
  return rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1u);
}

template <std::size_t N, bool L2>
void tile(const float* const* q, const float* x, std::size_t n, float* out) {
  __m512 s0[N], s1[N];
#pragma GCC unroll 8
  for (std::size_t t = 0; t < N; ++t) s0[t] = s1[t] = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + i);
    const __m512 x1 = _mm512_loadu_ps(x + i + 16);
#pragma GCC unroll 8
    for (std::size_t t = 0; t < N; ++t) {
      if constexpr (L2) {
        const __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(q[t] + i), x0);
        const __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(q[t] + i + 16), x1);
        s0[t] = _mm512_fmadd_ps(d0, d0, s0[t]);
        s1[t] = _mm512_fmadd_ps(d1, d1, s1[t]);
      } else {
        s0[t] = _mm512_fmadd_ps(_mm512_loadu_ps(q[t] + i), x0, s0[t]);
        s1[t] = _mm512_fmadd_ps(_mm512_loadu_ps(q[t] + i + 16), x1, s1[t]);
      }
    }
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 xm = _mm512_maskz_loadu_ps(m, x + i);
#pragma GCC unroll 8
    for (std::size_t t = 0; t < N; ++t) {
      if constexpr (L2) {
        const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, q[t] + i), xm);
        s0[t] = _mm512_fmadd_ps(d, d, s0[t]);
      } else {
        s0[t] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q[t] + i), xm, s0[t]);
      }
    }
  }
#pragma GCC unroll 8
  for (std::size_t t = 0; t < N; ++t) {
    const float s = _mm512_reduce_add_ps(_mm512_add_ps(s0[t], s1[t]));
    out[t] = L2 ? s : 1.0f - s;
  }
}

template <bool L2>
void dispatch(const float* const* q, std::size_t n, const float* x, std::size_t dims, float* out) {
  switch (n) {
    case 8: return tile<8, L2>(q, x, dims, out);
    case 7: return tile<7, L2>(q, x, dims, out);
    case 6: return tile<6, L2>(q, x, dims, out);
    case 5: return tile<5, L2>(q, x, dims, out);
    case 4: return tile<4, L2>(q, x, dims, out);
    case 3: return tile<3, L2>(q, x, dims, out);
    case 2: return tile<2, L2>(q, x, dims, out);
    case 1: return tile<1, L2>(q, x, dims, out);
    default: return;
  }
}

static_assert(kScanGroup == 8, "dispatch() covers 1..8 queries");

}  // namespace

void l2sq_tile_avx512(const float* const* q, std::size_t n, const float* x, std::size_t dims, float* out) {
  dispatch<true>(q, n, x, dims, out);
}

void ipd_tile_avx512(const float* const* q, std::size_t n, const float* x, std::size_t dims, float* out) {
  dispatch<false>(q, n, x, dims, out);
}

}  // namespace lakehouse::detail
