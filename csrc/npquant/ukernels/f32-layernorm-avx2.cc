// AVX2 + FMA float32 LayerNorm of one row (ukernel.h f32_layernorm_fn): the bits of
// f32-layernorm-scalar.cc. The canonical sums' 16 lanes are two ymm accumulators (lanes
// 0..7 take elements i % 16 < 8, lanes 8..15 the others); vmaskmovps for the tail.
#include <immintrin.h>

#include <cmath>

#include "../ukernel.h"
#include "avx2-fmath.h"

namespace npq {
namespace {

// p[i..i+7], lanes >= left (0..8) zero.
NPQ_YINLINE __m256 load8(const float* p, size_t i, size_t left) {
  return left >= 8 ? _mm256_loadu_ps(p + i) : _mm256_maskload_ps(p + i, mask8(left));
}

// The deviations of x[i..i+7] from m0 added to sd, their squares to sq (+0 beyond left).
NPQ_YINLINE void add_dev(const float* x, size_t i, size_t left, __m256 m0, __m256* sd, __m256* sq) {
  __m256 d = _mm256_sub_ps(load8(x, i, left), m0);
  if (left < 8) d = _mm256_and_ps(d, _mm256_castsi256_ps(mask8(left)));
  *sd = _mm256_add_ps(*sd, d);
  *sq = _mm256_fmadd_ps(d, d, *sq);
}

}  // namespace

void f32_layernorm__avx2(size_t n, const float* x, const float* gamma, const float* beta, float eps,
                         float* y) {
  const float count = static_cast<float>(n);
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  for (size_t i = 0; i < n; i += 16) {
    lo = _mm256_add_ps(lo, load8(x, i, n - i));
    if (i + 8 < n) hi = _mm256_add_ps(hi, load8(x, i + 8, n - i - 8));
  }
  const float m0 = sum16_tree8(lo, hi) / count;
  const __m256 vm0 = _mm256_set1_ps(m0);
  __m256 sd_lo = _mm256_setzero_ps(), sd_hi = sd_lo, sq_lo = sd_lo, sq_hi = sd_lo;
  for (size_t i = 0; i < n; i += 16) {
    add_dev(x, i, n - i, vm0, &sd_lo, &sq_lo);
    if (i + 8 < n) add_dev(x, i + 8, n - i - 8, vm0, &sd_hi, &sq_hi);
  }
  const float c = sum16_tree8(sd_lo, sd_hi) / count;
  const float sqn = sum16_tree8(sq_lo, sq_hi) / count - c * c;
  const float var = 0.0f > sqn ? 0.0f : sqn;  // max_ps(0, sqn)
  const __m256 vmean = _mm256_set1_ps(m0 + c);
  const __m256 rstd = _mm256_set1_ps(1.0f / std::sqrt(var + eps));
  for (size_t i = 0; i < n; i += 8) {
    const size_t left = n - i;
    __m256 v = _mm256_mul_ps(_mm256_sub_ps(load8(x, i, left), vmean), rstd);
    if (gamma) v = _mm256_mul_ps(v, load8(gamma, i, left));
    if (beta) v = _mm256_add_ps(v, load8(beta, i, left));
    if (left >= 8)
      _mm256_storeu_ps(y + i, v);
    else
      _mm256_maskstore_ps(y + i, mask8(left), v);
  }
}

}  // namespace npq
