// AVX-512 float32 LayerNorm of one row, 16 lanes (ukernel.h f32_layernorm_fn): the bits
// of f32-layernorm-scalar.cc. One accumulator holds the canonical sum's 16 lanes
// (element i in lane i % 16); k-masked loads and stores for the tail.
#include <immintrin.h>

#include <cmath>

#include "../ukernel.h"
#include "avx512-fmath.h"

namespace npq {

void f32_layernorm__avx512vnni(size_t n, const float* x, const float* gamma, const float* beta,
                               float eps, float* y) {
  const float count = static_cast<float>(n);
  __m512 acc = _mm512_setzero_ps();
  for (size_t i = 0; i < n; i += 16)
    acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(mask16(n - i), x + i));
  const float m0 = sum16_tree16(acc) / count;
  const __m512 vm0 = _mm512_set1_ps(m0);
  __m512 sd = _mm512_setzero_ps(), sq = _mm512_setzero_ps();
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 k = mask16(n - i);
    const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm0);
    sd = _mm512_mask_add_ps(sd, k, sd, d);
    sq = _mm512_mask3_fmadd_ps(d, d, sq, k);
  }
  const float c = sum16_tree16(sd) / count;
  const float sqn = sum16_tree16(sq) / count - c * c;
  const float var = 0.0f > sqn ? 0.0f : sqn;  // max_ps(0, sqn)
  const __m512 vmean = _mm512_set1_ps(m0 + c);
  const __m512 rstd = _mm512_set1_ps(1.0f / std::sqrt(var + eps));
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 k = mask16(n - i);
    __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vmean), rstd);
    if (gamma) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, gamma + i));
    if (beta) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, beta + i));
    _mm512_mask_storeu_ps(y + i, k, v);
  }
}

}  // namespace npq
