// AVX2 quantized add (add_relu) of uint8 codes, 32 per step; the arithmetic of
// qu8-vadd-minmax-avx512vnni.cc with 8 lanes: fmaf dequantize (exactly the
// NumPy path's float64 one), fp32 add, optional max(v, 0), multiply by
// 1/scale, clamp to +-65536 (NaN to the lower end), cvtps2dq (half to even),
// + zero point, clamp to 0..255.
#include <immintrin.h>

#include <cstring>

#include "../ukernel.h"

namespace npq {
namespace {

struct Consts {
  __m256 sa, pa, sb, pb, inv, lo, hi;
  __m256i zp;
  bool relu;
};

inline __m256 dequant(const uint8_t* q, __m256 s, __m256 p) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
  return _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)), p);
}

// 8 codes as int32 in 0..255. kUnary: no b operand, v = da (a requantization).
template <bool kUnary>
inline __m256i add8(const uint8_t* a, const uint8_t* b, const Consts& c) {
  __m256 v = dequant(a, c.sa, c.pa);
  if (!kUnary) v = _mm256_add_ps(v, dequant(b, c.sb, c.pb));
  // max_ps returns its second operand when either is NaN: NaN stays NaN here ...
  if (c.relu) v = _mm256_max_ps(_mm256_setzero_ps(), v);
  // ... and becomes the lower bound here.
  const __m256 t = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v, c.inv), c.lo), c.hi);
  const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(t), c.zp);
  return _mm256_min_epi32(_mm256_max_epi32(q, _mm256_setzero_si256()), _mm256_set1_epi32(255));
}

// 32 codes: packs interleave 128-bit lanes; the permute restores the order.
template <bool kUnary>
inline void add32(const uint8_t* a, const uint8_t* b, uint8_t* y, const Consts& c) {
  const __m256i q0 = add8<kUnary>(a, b, c), q1 = add8<kUnary>(a + 8, b + 8, c);
  const __m256i q2 = add8<kUnary>(a + 16, b + 16, c), q3 = add8<kUnary>(a + 24, b + 24, c);
  const __m256i w = _mm256_packus_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
  const __m256i r = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), r);
}

template <bool kUnary>
void vadd(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y, const QAddParams* p) {
  const Consts c{
      _mm256_set1_ps(p->a_scale),  _mm256_set1_ps(p->a_premul),      _mm256_set1_ps(p->b_scale),
      _mm256_set1_ps(p->b_premul), _mm256_set1_ps(p->inv_scale),     _mm256_set1_ps(-65536.0f),
      _mm256_set1_ps(65536.0f),    _mm256_set1_epi32(p->zero_point), p->relu != 0};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) add32<kUnary>(a + i, kUnary ? b : b + i, y + i, c);
  if (i < n) {  // the tail through zero-padded buffers
    uint8_t ta[32] = {0}, tb[32] = {0}, ty[32];
    std::memcpy(ta, a + i, n - i);
    if (!kUnary) std::memcpy(tb, b + i, n - i);
    add32<kUnary>(ta, tb, ty, c);
    std::memcpy(y + i, ty, n - i);
  }
}

}  // namespace

void qu8_vadd_minmax__avx2(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                           const QAddParams* p) {
  if (b == nullptr)
    vadd<true>(n, a, b, y, p);
  else
    vadd<false>(n, a, b, y, p);
}

}  // namespace npq
