// AVX2 + FMA float32 GRU cell update, 8 hidden units per step (ukernel.h f32_vgru_fn): the
// bits of f32-vgru-scalar.cc. vmaskmovps for the tail.
#include <immintrin.h>

#include "../ukernel.h"
#include "avx2-fmath.h"

namespace npq {
namespace {

template <bool kTail>
NPQ_YINLINE void gru8(size_t n, size_t j, __m256i k, const float* gi, const float* gh,
                      const float* h, float* h_out) {
  auto ld = [&](const float* p) {
    return kTail ? _mm256_maskload_ps(p + j, k) : _mm256_loadu_ps(p + j);
  };
  const __m256 r = sigmoid8(_mm256_add_ps(ld(gi), ld(gh)));
  const __m256 z = sigmoid8(_mm256_add_ps(ld(gi + n), ld(gh + n)));
  const __m256 nn = tanh8(_mm256_add_ps(_mm256_mul_ps(ld(gh + 2 * n), r), ld(gi + 2 * n)));
  const __m256 h1 = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(ld(h), nn), z), nn);
  if (kTail)
    _mm256_maskstore_ps(h_out + j, k, h1);
  else
    _mm256_storeu_ps(h_out + j, h1);
}

}  // namespace

void f32_vgru__avx2(size_t n, const float* gi, const float* gh, const float* h, float* h_out) {
  size_t j = 0;
  for (; j + 8 <= n; j += 8) gru8<false>(n, j, __m256i{}, gi, gh, h, h_out);
  if (j < n) gru8<true>(n, j, mask8(n - j), gi, gh, h, h_out);
}

}  // namespace npq
