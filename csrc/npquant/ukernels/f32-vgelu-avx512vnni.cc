// AVX-512 float32 GELU, 32 floats per step: the reference's arithmetic
// (f32-vgelu-scalar.cc, vgelu-coeffs.h) lane by lane, vfmadd for its std::fma.
// Tails use masked loads and stores, so nothing past n is read or written.
#include <immintrin.h>

#include "../ukernel.h"
#include "vgelu-coeffs.h"

namespace npq {
namespace {

inline __m512 clamp16(__m512 v, float lo, float hi) {
  return _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(lo)), _mm512_set1_ps(hi));
}

template <int NP, int NQ>
inline __m512 rational16(__m512 z, const float (&p)[NP], const float (&q)[NQ]) {
  const __m512 u = _mm512_mul_ps(z, z);
  __m512 pu = _mm512_set1_ps(p[NP - 1]);
  for (int i = NP - 2; i >= 0; --i) pu = _mm512_fmadd_ps(pu, u, _mm512_set1_ps(p[i]));
  __m512 qu = _mm512_set1_ps(q[NQ - 1]);
  for (int i = NQ - 2; i >= 0; --i) qu = _mm512_fmadd_ps(qu, u, _mm512_set1_ps(q[i]));
  return clamp16(_mm512_div_ps(_mm512_mul_ps(z, pu), qu), -1.0f, 1.0f);
}

template <bool kTanh>
inline __m512 gelu16(__m512 x) {
  __m512 e;
  if (kTanh) {
    const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    const __m512 s = _mm512_mul_ps(_mm512_set1_ps(kGeluBeta),
                                   _mm512_fmadd_ps(_mm512_set1_ps(kGeluKappa), x3, x));
    e = rational16(clamp16(s, -kTanhClamp, kTanhClamp), kTanhP, kTanhQ);
  } else {
    const __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(kGeluRsqrt2));
    e = rational16(clamp16(z, -kErfClamp, kErfClamp), kErfP, kErfQ);
  }
  return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)),
                       _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

template <bool kTanh>
void run(size_t n, const float* x, float* y) {
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 a = gelu16<kTanh>(_mm512_loadu_ps(x + i));
    const __m512 b = gelu16<kTanh>(_mm512_loadu_ps(x + i + 16));
    _mm512_storeu_ps(y + i, a);
    _mm512_storeu_ps(y + i + 16, b);
  }
  for (; i < n; i += 16) {
    const size_t left = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << left) - 1);
    _mm512_mask_storeu_ps(y + i, m, gelu16<kTanh>(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace

void f32_vgelu__avx512vnni(size_t n, const float* x, float* y, int tanh_form) {
  if (tanh_form)
    run<true>(n, x, y);
  else
    run<false>(n, x, y);
}

}  // namespace npq
