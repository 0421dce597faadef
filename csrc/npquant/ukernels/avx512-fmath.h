// AVX-512 float32 exp / sigmoid / tanh and the canonical 16-lane sum: scalar-fmath.h's
// operations, lane by lane (fmath-coeffs.h has the formulas). Internal linkage only
// (anonymous namespace, always_inline): each ukernel file gets its own copy compiled
// with its own flags (docs/dispatch.md).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "fmath-coeffs.h"

namespace npq {
namespace {

#define NPQ_ZINLINE inline __attribute__((always_inline))

NPQ_ZINLINE __m512 sign16() { return _mm512_castsi512_ps(_mm512_set1_epi32(int(kSignBit))); }

// 2^k per lane for k in [-126, 127].
NPQ_ZINLINE __m512 pow2_16(__m512i k) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k, _mm512_set1_epi32(127)), 23));
}

NPQ_ZINLINE __m512 exp_reduce16(__m512 x, __m512i* n) {
  const __m512 magic = _mm512_set1_ps(kRoundMagic);
  const __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(kLog2e), magic);
  const __m512 nf = _mm512_sub_ps(t, magic);
  __m512 r = _mm512_fmadd_ps(nf, _mm512_set1_ps(-kLn2Hi), x);
  r = _mm512_fmadd_ps(nf, _mm512_set1_ps(-kLn2Lo), r);
  *n = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_castps_si512(magic));
  return r;
}

NPQ_ZINLINE __m512 exp_poly16(__m512 r) {
  __m512 q = _mm512_set1_ps(kExpQ[5]);
  for (int i = 4; i >= 0; --i) q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(kExpQ[i]));
  return q;
}

NPQ_ZINLINE __m512 exp_nonpos16(__m512 x) {
  x = _mm512_min_ps(_mm512_setzero_ps(), _mm512_max_ps(_mm512_set1_ps(kExpLo), x));
  __m512i n;
  const __m512 r = exp_reduce16(x, &n);
  const __m512 p = _mm512_fmadd_ps(exp_poly16(r), r, _mm512_set1_ps(1.0f));
  const __m512i n1 = _mm512_srai_epi32(n, 1);
  const __m512i n2 = _mm512_sub_epi32(n, n1);
  return _mm512_mul_ps(_mm512_mul_ps(p, pow2_16(n1)), pow2_16(n2));
}

NPQ_ZINLINE __m512 sigmoid16(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 e = exp_nonpos16(_mm512_or_ps(x, sign16()));
  const __mmask16 nonneg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
  return _mm512_div_ps(_mm512_mask_blend_ps(nonneg, e, one), _mm512_add_ps(one, e));
}

NPQ_ZINLINE __m512 tanh16(__m512 x) {
  const __m512 sign = sign16();
  const __m512 a = _mm512_min_ps(_mm512_set1_ps(kTanhClamp), _mm512_andnot_ps(sign, x));
  __m512i n;
  const __m512 r = exp_reduce16(_mm512_mul_ps(a, _mm512_set1_ps(-2.0f)), &n);
  const __m512 m = _mm512_mul_ps(r, exp_poly16(r));
  const __m512 s = pow2_16(n);
  const __m512 em1 = _mm512_fmadd_ps(s, m, _mm512_sub_ps(s, _mm512_set1_ps(1.0f)));
  const __m512 mag =
      _mm512_div_ps(_mm512_xor_ps(em1, sign), _mm512_add_ps(_mm512_set1_ps(2.0f), em1));
  return _mm512_or_ps(_mm512_andnot_ps(sign, mag), _mm512_and_ps(x, sign));
}

// The tree that ends the canonical sum (scalar-fmath.h sum16_tree) of 16 lanes, through
// memory: GCC 12 warns -Wuninitialized on the undefined passthrough operands inside
// _mm512_castps512_ps256, _mm512_extractf64x4_pd and _mm512_shuffle_f32x4.
NPQ_ZINLINE float sum16_tree16(__m512 v) {
  alignas(64) float l[16];
  _mm512_store_ps(l, v);
  float s8[8], s4[4];
  for (int j = 0; j < 8; ++j) s8[j] = l[j] + l[j + 8];
  for (int j = 0; j < 4; ++j) s4[j] = s8[j] + s8[j + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

// The largest of 16 lanes (the order does not matter: a maximum is exact).
NPQ_ZINLINE float max16(__m512 v) {
  alignas(64) float l[16];
  _mm512_store_ps(l, v);
  float m = l[0];
  for (int j = 1; j < 16; ++j) m = l[j] > m ? l[j] : m;
  return m;
}

// The lanes < n (n clamped to 16).
NPQ_ZINLINE __mmask16 mask16(size_t n) {
  return static_cast<__mmask16>(n >= 16 ? 0xFFFFu : (1u << n) - 1u);
}

}  // namespace
}  // namespace npq
