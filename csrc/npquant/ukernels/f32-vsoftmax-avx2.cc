// AVX2 + FMA float32 softmax of one row (ukernel.h f32_vsoftmax_fn): the bits of
// f32-vsoftmax-scalar.cc. The canonical sum's 16 lanes are two ymm accumulators (lanes
// 0..7 take elements i % 16 < 8, lanes 8..15 the others); vmaskmovps for the tail, so
// nothing past n is touched.
#include <immintrin.h>

#include <limits>

#include "../ukernel.h"
#include "avx2-fmath.h"

namespace npq {
namespace {

// x[i..i+7] (+ bias), lanes >= left (0..8) set to fill.
NPQ_YINLINE __m256 load_v(size_t left, const float* x, const float* bias, size_t i, __m256 fill) {
  if (left >= 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    return bias ? _mm256_add_ps(v, _mm256_loadu_ps(bias + i)) : v;
  }
  const __m256i k = mask8(left);
  __m256 v = _mm256_maskload_ps(x + i, k);
  if (bias) v = _mm256_add_ps(v, _mm256_maskload_ps(bias + i, k));
  return _mm256_blendv_ps(fill, v, _mm256_castsi256_ps(k));
}

// exp(v - m) of 8 lanes (left of them real) stored to y and added to acc (+0 beyond left).
NPQ_YINLINE void exp_store_add(size_t left, const float* x, const float* bias, size_t i, __m256 m,
                               float* y, __m256* acc) {
  const __m256 e = exp_nonpos8(_mm256_sub_ps(load_v(left, x, bias, i, m), m));
  if (left >= 8) {
    _mm256_storeu_ps(y + i, e);
    *acc = _mm256_add_ps(*acc, e);
  } else {
    const __m256i k = mask8(left);
    _mm256_maskstore_ps(y + i, k, e);
    *acc = _mm256_add_ps(*acc, _mm256_and_ps(e, _mm256_castsi256_ps(k)));
  }
}

}  // namespace

void f32_vsoftmax__avx2(size_t n, const float* x, const float* bias, float* y) {
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 vmax = ninf;
  for (size_t i = 0; i < n; i += 8) vmax = _mm256_max_ps(vmax, load_v(n - i, x, bias, i, ninf));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
  const __m256 m = _mm256_broadcastss_ps(m4);
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  for (size_t i = 0; i < n; i += 16) {
    exp_store_add(n - i, x, bias, i, m, y, &lo);
    if (i + 8 < n) exp_store_add(n - i - 8, x, bias, i + 8, m, y, &hi);
  }
  const __m256 s = _mm256_set1_ps(sum16_tree8(lo, hi));
  for (size_t i = 0; i < n; i += 8) {
    if (n - i >= 8) {
      _mm256_storeu_ps(y + i, _mm256_div_ps(_mm256_loadu_ps(y + i), s));
    } else {
      const __m256i k = mask8(n - i);
      _mm256_maskstore_ps(y + i, k, _mm256_div_ps(_mm256_maskload_ps(y + i, k), s));
    }
  }
}

}  // namespace npq
