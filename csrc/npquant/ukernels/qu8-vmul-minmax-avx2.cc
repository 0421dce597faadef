// AVX2 quantized mul of uint8 codes, 32 per step; the arithmetic of
// qu8-vmul-minmax-avx512vnni.cc with 8 lanes: exact int32 product of the
// centred codes, fp32 multiply, clamp to +-65536 (NaN to the lower end),
// cvtps2dq (half to even), + zero point, clamp to 0..255.
#include <immintrin.h>

#include <cstring>

#include "../ukernel.h"

namespace npq {
namespace {

struct Consts {
  __m256i za, zb, zp;
  __m256 mult, lo, hi;
};

inline __m256i load8(const uint8_t* q) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)));
}

// 8 codes as int32 in 0..255
inline __m256i mul8(const uint8_t* a, const uint8_t* b, const Consts& c) {
  const __m256i pa = _mm256_sub_epi32(load8(a), c.za), pb = _mm256_sub_epi32(load8(b), c.zb);
  const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_mullo_epi32(pa, pb)), c.mult);
  // max_ps returns its second operand when either is NaN: NaN -> lo.
  const __m256 t = _mm256_min_ps(_mm256_max_ps(v, c.lo), c.hi);
  const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(t), c.zp);
  return _mm256_min_epi32(_mm256_max_epi32(q, _mm256_setzero_si256()), _mm256_set1_epi32(255));
}

// 32 codes: packs interleave 128-bit lanes; the permute restores the order.
inline void mul32(const uint8_t* a, const uint8_t* b, uint8_t* y, const Consts& c) {
  const __m256i q0 = mul8(a, b, c), q1 = mul8(a + 8, b + 8, c);
  const __m256i q2 = mul8(a + 16, b + 16, c), q3 = mul8(a + 24, b + 24, c);
  const __m256i w = _mm256_packus_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
  const __m256i r = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), r);
}

}  // namespace

void qu8_vmul_minmax__avx2(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                           const QMulParams* p) {
  const Consts c{_mm256_set1_epi32(p->a_zero_point), _mm256_set1_epi32(p->b_zero_point),
                 _mm256_set1_epi32(p->zero_point),   _mm256_set1_ps(p->multiplier),
                 _mm256_set1_ps(-65536.0f),          _mm256_set1_ps(65536.0f)};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) mul32(a + i, b + i, y + i, c);
  if (i < n) {  // the tail through zero-padded buffers
    uint8_t ta[32] = {0}, tb[32] = {0}, ty[32];
    std::memcpy(ta, a + i, n - i);
    std::memcpy(tb, b + i, n - i);
    mul32(ta, tb, ty, c);
    std::memcpy(y + i, ty, n - i);
  }
}

}  // namespace npq
