// AVX2 + FMA float32 exp / sigmoid / tanh and the canonical 16-lane sum (two ymm):
// scalar-fmath.h's operations, lane by lane (fmath-coeffs.h has the formulas).
// Internal linkage only (anonymous namespace, always_inline): each ukernel file gets
// its own copy compiled with its own flags (docs/dispatch.md).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "fmath-coeffs.h"

namespace npq {
namespace {

#define NPQ_YINLINE inline __attribute__((always_inline))

NPQ_YINLINE __m256 sign8() { return _mm256_castsi256_ps(_mm256_set1_epi32(int(kSignBit))); }

// 2^k per lane for k in [-126, 127].
NPQ_YINLINE __m256 pow2_8(__m256i k) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}

NPQ_YINLINE __m256 exp_reduce8(__m256 x, __m256i* n) {
  const __m256 magic = _mm256_set1_ps(kRoundMagic);
  const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(kLog2e), magic);
  const __m256 nf = _mm256_sub_ps(t, magic);
  __m256 r = _mm256_fmadd_ps(nf, _mm256_set1_ps(-kLn2Hi), x);
  r = _mm256_fmadd_ps(nf, _mm256_set1_ps(-kLn2Lo), r);
  *n = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(magic));
  return r;
}

NPQ_YINLINE __m256 exp_poly8(__m256 r) {
  __m256 q = _mm256_set1_ps(kExpQ[5]);
  for (int i = 4; i >= 0; --i) q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kExpQ[i]));
  return q;
}

NPQ_YINLINE __m256 exp_nonpos8(__m256 x) {
  x = _mm256_min_ps(_mm256_setzero_ps(), _mm256_max_ps(_mm256_set1_ps(kExpLo), x));
  __m256i n;
  const __m256 r = exp_reduce8(x, &n);
  const __m256 p = _mm256_fmadd_ps(exp_poly8(r), r, _mm256_set1_ps(1.0f));
  const __m256i n1 = _mm256_srai_epi32(n, 1);
  const __m256i n2 = _mm256_sub_epi32(n, n1);
  return _mm256_mul_ps(_mm256_mul_ps(p, pow2_8(n1)), pow2_8(n2));
}

NPQ_YINLINE __m256 sigmoid8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 e = exp_nonpos8(_mm256_or_ps(x, sign8()));
  const __m256 nonneg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);
  return _mm256_div_ps(_mm256_blendv_ps(e, one, nonneg), _mm256_add_ps(one, e));
}

NPQ_YINLINE __m256 tanh8(__m256 x) {
  const __m256 sign = sign8();
  const __m256 a = _mm256_min_ps(_mm256_set1_ps(kTanhClamp), _mm256_andnot_ps(sign, x));
  __m256i n;
  const __m256 r = exp_reduce8(_mm256_mul_ps(a, _mm256_set1_ps(-2.0f)), &n);
  const __m256 m = _mm256_mul_ps(r, exp_poly8(r));
  const __m256 s = pow2_8(n);
  const __m256 em1 = _mm256_fmadd_ps(s, m, _mm256_sub_ps(s, _mm256_set1_ps(1.0f)));
  const __m256 mag =
      _mm256_div_ps(_mm256_xor_ps(em1, sign), _mm256_add_ps(_mm256_set1_ps(2.0f), em1));
  return _mm256_or_ps(_mm256_andnot_ps(sign, mag), _mm256_and_ps(x, sign));
}

// The tree that ends the canonical sum (scalar-fmath.h sum16_tree): lo holds lanes
// 0..7, hi lanes 8..15.
NPQ_YINLINE float sum16_tree8(__m256 lo, __m256 hi) {
  const __m256 s8 = _mm256_add_ps(lo, hi);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

// All ones in the lanes < n (n clamped to 0..8), for vmaskmovps.
NPQ_YINLINE __m256i mask8(size_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n > 8 ? 8 : n)), idx);
}

}  // namespace
}  // namespace npq
