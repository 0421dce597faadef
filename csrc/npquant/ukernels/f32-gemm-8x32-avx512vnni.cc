// AVX-512 float32 GEMM tile, 8 rows x 32 columns (ukernel.h f32_gemm_fn): per k, two
// zmm of B's row, one broadcast of A per row, 16 vfmadd231ps into 16 accumulators, so
// each output is the fma chain over k in order of f32-gemm-4x8-scalar.cc. A partial
// panel (nc < 32) is read and written with k-masks; rows are a template parameter.
#include <immintrin.h>

#include "../ukernel.h"
#include "avx512-fmath.h"

namespace npq {
namespace {

template <int MR, bool kFull>
NPQ_ZINLINE void tile(size_t nc, size_t kc, const float* a, size_t as, const float* b, size_t bs,
                      const float* bias, float* c, size_t cs) {
  const __mmask16 m0 = kFull ? 0xFFFF : mask16(nc),
                  m1 = kFull ? 0xFFFF : mask16(nc > 16 ? nc - 16 : 0);
  __m512 acc[MR][2];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (size_t k = 0; k < kc; ++k) {
    const float* bk = b + k * bs;
    const __m512 b0 = kFull ? _mm512_loadu_ps(bk) : _mm512_maskz_loadu_ps(m0, bk);
    const __m512 b1 = kFull ? _mm512_loadu_ps(bk + 16) : _mm512_maskz_loadu_ps(m1, bk + 16);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * as + k]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  const __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  const __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    __m512 y0 = acc[r][0], y1 = acc[r][1];
    if (bias) y0 = _mm512_add_ps(y0, bias0), y1 = _mm512_add_ps(y1, bias1);
    _mm512_mask_storeu_ps(c + r * cs, m0, y0);
    _mm512_mask_storeu_ps(c + r * cs + 16, m1, y1);
  }
}

template <bool kFull>
NPQ_ZINLINE void rows(size_t mr, size_t nc, size_t kc, const float* a, size_t as, const float* b,
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
    case 6:
      return tile<6, kFull>(nc, kc, a, as, b, bs, bias, c, cs);
    case 7:
      return tile<7, kFull>(nc, kc, a, as, b, bs, bias, c, cs);
    default:
      return tile<8, kFull>(nc, kc, a, as, b, bs, bias, c, cs);
  }
}

}  // namespace

void f32_gemm_8x32__avx512vnni(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                               const float* b, size_t b_stride, const float* bias, float* c,
                               size_t c_stride) {
  if (nc == 32)
    rows<true>(mr, nc, kc, a, a_stride, b, b_stride, bias, c, c_stride);
  else
    rows<false>(mr, nc, kc, a, a_stride, b, b_stride, bias, c, c_stride);
}

}  // namespace npq
