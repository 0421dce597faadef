// AVX2 + FMA float32 LSTM cell update, 8 hidden units per step (ukernel.h f32_vlstm_fn):
// the bits of f32-vlstm-scalar.cc. vmaskmovps for the tail.
#include <immintrin.h>

#include "../ukernel.h"
#include "avx2-fmath.h"

namespace npq {
namespace {

template <bool kTail>
NPQ_YINLINE void lstm8(size_t n, size_t j, __m256i k, const float* gi, const float* gh,
                       const float* c, float* c_out, float* h_out) {
  auto ld = [&](const float* p) {
    return kTail ? _mm256_maskload_ps(p + j, k) : _mm256_loadu_ps(p + j);
  };
  const __m256 i = sigmoid8(_mm256_add_ps(ld(gi), ld(gh)));
  const __m256 f = sigmoid8(_mm256_add_ps(ld(gi + n), ld(gh + n)));
  const __m256 g = tanh8(_mm256_add_ps(ld(gi + 2 * n), ld(gh + 2 * n)));
  const __m256 o = sigmoid8(_mm256_add_ps(ld(gi + 3 * n), ld(gh + 3 * n)));
  const __m256 c1 = _mm256_add_ps(_mm256_mul_ps(f, ld(c)), _mm256_mul_ps(i, g));
  const __m256 h1 = _mm256_mul_ps(o, tanh8(c1));
  if (kTail) {
    _mm256_maskstore_ps(c_out + j, k, c1);
    _mm256_maskstore_ps(h_out + j, k, h1);
  } else {
    _mm256_storeu_ps(c_out + j, c1);
    _mm256_storeu_ps(h_out + j, h1);
  }
}

}  // namespace

void f32_vlstm__avx2(size_t n, const float* gi, const float* gh, const float* c, float* c_out,
                     float* h_out) {
  size_t j = 0;
  for (; j + 8 <= n; j += 8) lstm8<false>(n, j, __m256i{}, gi, gh, c, c_out, h_out);
  if (j < n) lstm8<true>(n, j, mask8(n - j), gi, gh, c, c_out, h_out);
}

}  // namespace npq
