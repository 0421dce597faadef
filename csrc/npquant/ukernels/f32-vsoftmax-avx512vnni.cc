// AVX-512 float32 softmax of one row, 16 lanes (ukernel.h f32_vsoftmax_fn): the bits of
// f32-vsoftmax-scalar.cc. One accumulator holds the canonical sum's 16 lanes (element i
// in lane i % 16); k-masked loads and stores for the tail, so nothing past n is touched.
#include <immintrin.h>

#include <limits>

#include "../ukernel.h"
#include "avx512-fmath.h"

namespace npq {
namespace {

NPQ_ZINLINE __m512 load_v(__mmask16 k, const float* x, const float* bias, size_t i, __m512 fill) {
  __m512 v = _mm512_mask_loadu_ps(fill, k, x + i);
  if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, bias + i));
  return v;
}

}  // namespace

void f32_vsoftmax__avx512vnni(size_t n, const float* x, const float* bias, float* y) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 vmax = ninf;
  for (size_t i = 0; i < n; i += 16)
    vmax = _mm512_max_ps(vmax, load_v(mask16(n - i), x, bias, i, ninf));
  const __m512 m = _mm512_set1_ps(max16(vmax));
  __m512 acc = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp_nonpos16(_mm512_sub_ps(load_v(0xFFFF, x, bias, i, ninf), m));
    _mm512_storeu_ps(y + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (i < n) {
    const __mmask16 k = mask16(n - i);
    const __m512 e = exp_nonpos16(_mm512_sub_ps(load_v(k, x, bias, i, ninf), m));
    _mm512_mask_storeu_ps(y + i, k, e);
    acc = _mm512_mask_add_ps(acc, k, acc, e);
  }
  const __m512 s = _mm512_set1_ps(sum16_tree16(acc));
  for (i = 0; i < n; i += 16) {
    const __mmask16 k = mask16(n - i);
    _mm512_mask_storeu_ps(y + i, k, _mm512_div_ps(_mm512_maskz_loadu_ps(k, y + i), s));
  }
}

}  // namespace npq
