// AVX-512 quantized mul of uint8 codes, 64 per step:
// y = clamp(nearbyint(fl(float((a - a_zp) * (b - b_zp)) * multiplier)) + zp, 0, 255),
// the product exact in int32 (and in fp32: |p| <= 255^2), the scaled value
// clamped to +-65536 before rounding (NaN, from 0 * inf, to the lower end, as the
// NumPy path maps it); cvtps2dq rounds half to even under the default MXCSR.
#include <immintrin.h>

#include "../ukernel.h"

namespace npq {
namespace {

struct Consts {
  __m512i za, zb, zp;
  __m512 mult, lo, hi;
};

inline __m128i mul16(__m128i a, __m128i b, const Consts& c) {
  const __m512i pa = _mm512_sub_epi32(_mm512_cvtepu8_epi32(a), c.za);
  const __m512i pb = _mm512_sub_epi32(_mm512_cvtepu8_epi32(b), c.zb);
  const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_mullo_epi32(pa, pb)), c.mult);
  // max_ps returns its second operand when either is NaN: NaN -> lo.
  const __m512 t = _mm512_min_ps(_mm512_max_ps(v, c.lo), c.hi);
  __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(t), c.zp);
  q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_setzero_si512()), _mm512_set1_epi32(255));
  return _mm512_cvtepi32_epi8(q);  // 0..255: the truncating narrow is exact
}

}  // namespace

void qu8_vmul_minmax__avx512vnni(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                                 const QMulParams* p) {
  const Consts c{_mm512_set1_epi32(p->a_zero_point), _mm512_set1_epi32(p->b_zero_point),
                 _mm512_set1_epi32(p->zero_point),   _mm512_set1_ps(p->multiplier),
                 _mm512_set1_ps(-65536.0f),          _mm512_set1_ps(65536.0f)};
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (size_t j = 0; j < 64; j += 16) {
      const __m128i qa = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i + j));
      const __m128i qb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i + j));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i + j), mul16(qa, qb, c));
    }
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m128i qa = _mm_maskz_loadu_epi8(m, a + i);
    const __m128i qb = _mm_maskz_loadu_epi8(m, b + i);
    _mm_mask_storeu_epi8(y + i, m, mul16(qa, qb, c));
  }
}

}  // namespace npq
