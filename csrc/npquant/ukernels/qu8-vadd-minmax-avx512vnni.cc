// AVX-512 quantized add (add_relu) of uint8 codes, 64 per step:
// y = clamp(nearbyint(fl(v * inv)) + zp, 0, 255), v = fl(da + db) (then max(v, 0)
// for relu), da = fmaf(a_scale, a, a_premul). The fma is exactly the NumPy
// path's float64 dequantize (docs/quantization.md, "Elementwise ops"). t is
// clamped to +-65536 before rounding (NaN to the lower end, as the NumPy path
// maps NaN), and cvtps2dq rounds half to even under the default MXCSR.
#include <immintrin.h>

#include "../ukernel.h"

namespace npq {
namespace {

struct Consts {
  __m512 sa, pa, sb, pb, inv, lo, hi;
  __m512i zp;
  bool relu;
};

inline __m512 dequant(__m128i q, __m512 s, __m512 p) {
  return _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q)), p);
}

// kUnary: no b operand, v = da (a requantization: cat's operands).
template <bool kUnary>
inline __m128i add16(__m128i a, __m128i b, const Consts& c) {
  __m512 v = dequant(a, c.sa, c.pa);
  if (!kUnary) v = _mm512_add_ps(v, dequant(b, c.sb, c.pb));
  // max_ps returns its second operand when either is NaN: NaN stays NaN here ...
  if (c.relu) v = _mm512_max_ps(_mm512_setzero_ps(), v);
  // ... and becomes the lower bound here.
  __m512 t = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, c.inv), c.lo), c.hi);
  __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(t), c.zp);
  q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_setzero_si512()), _mm512_set1_epi32(255));
  return _mm512_cvtepi32_epi8(q);  // 0..255: the truncating narrow is exact
}

template <bool kUnary>
void vadd(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y, const QAddParams* p) {
  const Consts c{
      _mm512_set1_ps(p->a_scale),  _mm512_set1_ps(p->a_premul),      _mm512_set1_ps(p->b_scale),
      _mm512_set1_ps(p->b_premul), _mm512_set1_ps(p->inv_scale),     _mm512_set1_ps(-65536.0f),
      _mm512_set1_ps(65536.0f),    _mm512_set1_epi32(p->zero_point), p->relu != 0};
  const __m128i zero = _mm_setzero_si128();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (size_t j = 0; j < 64; j += 16) {
      const __m128i qa = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i + j));
      const __m128i qb =
          kUnary ? zero : _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i + j));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i + j), add16<kUnary>(qa, qb, c));
    }
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m128i qa = _mm_maskz_loadu_epi8(m, a + i);
    const __m128i qb = kUnary ? zero : _mm_maskz_loadu_epi8(m, b + i);
    _mm_mask_storeu_epi8(y + i, m, add16<kUnary>(qa, qb, c));
  }
}

}  // namespace

void qu8_vadd_minmax__avx512vnni(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                                 const QAddParams* p) {
  if (b == nullptr)
    vadd<true>(n, a, b, y, p);
  else
    vadd<false>(n, a, b, y, p);
}

}  // namespace npq
