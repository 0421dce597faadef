// AVX-512 float32 GRU cell update, 16 hidden units per step (ukernel.h f32_vgru_fn): the
// bits of f32-vgru-scalar.cc. k-masked loads and stores for the tail.
#include <immintrin.h>

#include "../ukernel.h"
#include "avx512-fmath.h"

namespace npq {

void f32_vgru__avx512vnni(size_t n, const float* gi, const float* gh, const float* h,
                          float* h_out) {
  for (size_t j = 0; j < n; j += 16) {
    const __mmask16 k = mask16(n - j);
    auto ld = [&](const float* p) { return _mm512_maskz_loadu_ps(k, p + j); };
    const __m512 r = sigmoid16(_mm512_add_ps(ld(gi), ld(gh)));
    const __m512 z = sigmoid16(_mm512_add_ps(ld(gi + n), ld(gh + n)));
    const __m512 nn = tanh16(_mm512_add_ps(_mm512_mul_ps(ld(gh + 2 * n), r), ld(gi + 2 * n)));
    const __m512 h1 = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(ld(h), nn), z), nn);
    _mm512_mask_storeu_ps(h_out + j, k, h1);
  }
}

}  // namespace npq
