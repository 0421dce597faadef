// AVX-512 float32 LSTM cell update, 16 hidden units per step (ukernel.h f32_vlstm_fn):
// the bits of f32-vlstm-scalar.cc. k-masked loads and stores for the tail.
#include <immintrin.h>

#include "../ukernel.h"
#include "avx512-fmath.h"

namespace npq {

void f32_vlstm__avx512vnni(size_t n, const float* gi, const float* gh, const float* c, float* c_out,
                           float* h_out) {
  for (size_t j = 0; j < n; j += 16) {
    const __mmask16 k = mask16(n - j);
    auto pre = [&](size_t gate) {
      return _mm512_add_ps(_mm512_maskz_loadu_ps(k, gi + gate * n + j),
                           _mm512_maskz_loadu_ps(k, gh + gate * n + j));
    };
    const __m512 i = sigmoid16(pre(0));
    const __m512 f = sigmoid16(pre(1));
    const __m512 g = tanh16(pre(2));
    const __m512 o = sigmoid16(pre(3));
    const __m512 c1 =
        _mm512_add_ps(_mm512_mul_ps(f, _mm512_maskz_loadu_ps(k, c + j)), _mm512_mul_ps(i, g));
    _mm512_mask_storeu_ps(c_out + j, k, c1);
    _mm512_mask_storeu_ps(h_out + j, k, _mm512_mul_ps(o, tanh16(c1)));
  }
}

}  // namespace npq
