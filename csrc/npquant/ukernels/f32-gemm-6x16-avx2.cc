// AVX2 + FMA float32 GEMM tile, 6 rows x 16 columns (ukernel.h f32_gemm_fn): per k, two
// ymm of B's row, one broadcast of A per row, 12 vfmadd231ps into 12 accumulators (15 of
// 16 registers), so each output is the fma chain over k in order of
// f32-gemm-4x8-scalar.cc. A partial panel (nc < 16) uses vmaskmovps.
#include <immintrin.h>

#include "../ukernel.h"
#include "avx2-fmath.h"

namespace npq {
namespace {

template <int MR, bool kFull>
NPQ_YINLINE void tile(size_t nc, size_t kc, const float* a, size_t as, const float* b, size_t bs,
                      const float* bias, float* c, size_t cs) {
  const __m256i m0 = mask8(nc), m1 = mask8(nc > 8 ? nc - 8 : 0);
  __m256 acc[MR][2];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (size_t k = 0; k < kc; ++k) {
    const float* bk = b + k * bs;
    const __m256 b0 = kFull ? _mm256_loadu_ps(bk) : _mm256_maskload_ps(bk, m0);
    const __m256 b1 = kFull ? _mm256_loadu_ps(bk + 8) : _mm256_maskload_ps(bk + 8, m1);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r * as + k);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  const __m256 bias0 = bias ? _mm256_maskload_ps(bias, m0) : _mm256_setzero_ps();
  const __m256 bias1 = bias ? _mm256_maskload_ps(bias + 8, m1) : _mm256_setzero_ps();
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    __m256 y0 = acc[r][0], y1 = acc[r][1];
    if (bias) y0 = _mm256_add_ps(y0, bias0), y1 = _mm256_add_ps(y1, bias1);
    if (kFull) {
      _mm256_storeu_ps(c + r * cs, y0);
      _mm256_storeu_ps(c + r * cs + 8, y1);
    } else {
      _mm256_maskstore_ps(c + r * cs, m0, y0);
      _mm256_maskstore_ps(c + r * cs + 8, m1, y1);
    }
  }
}

template <bool kFull>
NPQ_YINLINE void rows(size_t mr, size_t nc, size_t kc, const float* a, size_t as, const float* b,
                      size_t bs, const float* bias, float* c, size_t cs) {
  switch (mr) {
    case 1:
      return tile<1, kFull>(nc, kc, a, as, b, bs, bias, c, cs);
    case 2:
      return tile<2, kFull>(nc, kc, a, as, b, bs, bias, c, cs);
    case 3:
      return tile<3, kFull>(nc, kc, a, as, b, bs, bias, c, cs);
    case 4:
      return tile<4, kFull>(nc, kc, a, as, b, bs, bias, c, cs);
    case 5:
      return tile<5, kFull>(nc, kc, a, as, b, bs, bias, c, cs);
    default:
      return tile<6, kFull>(nc, kc, a, as, b, bs, bias, c, cs);
  }
}

}  // namespace

void f32_gemm_6x16__avx2(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                         const float* b, size_t b_stride, const float* bias, float* c,
                         size_t c_stride) {
  if (nc == 16)
    rows<true>(mr, nc, kc, a, a_stride, b, b_stride, bias, c, c_stride);
  else
    rows<false>(mr, nc, kc, a, a_stride, b, b_stride, bias, c, c_stride);
}

}  // namespace npq
