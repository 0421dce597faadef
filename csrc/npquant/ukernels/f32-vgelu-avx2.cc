// AVX2 + FMA float32 GELU, 16 floats per step: the reference's arithmetic
// (f32-vgelu-scalar.cc, vgelu-coeffs.h) lane by lane, vfmadd for its std::fma.
// Tails use masked loads and stores, so nothing past n is read or written.
#include <immintrin.h>

#include "../ukernel.h"
#include "vgelu-coeffs.h"

namespace npq {
namespace {

inline __m256 clamp8(__m256 v, float lo, float hi) {
  return _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
}

template <int NP, int NQ>
inline __m256 rational8(__m256 z, const float (&p)[NP], const float (&q)[NQ]) {
  const __m256 u = _mm256_mul_ps(z, z);
  __m256 pu = _mm256_set1_ps(p[NP - 1]);
  for (int i = NP - 2; i >= 0; --i) pu = _mm256_fmadd_ps(pu, u, _mm256_set1_ps(p[i]));
  __m256 qu = _mm256_set1_ps(q[NQ - 1]);
  for (int i = NQ - 2; i >= 0; --i) qu = _mm256_fmadd_ps(qu, u, _mm256_set1_ps(q[i]));
  return clamp8(_mm256_div_ps(_mm256_mul_ps(z, pu), qu), -1.0f, 1.0f);
}

template <bool kTanh>
inline __m256 gelu8(__m256 x) {
  __m256 e;
  if (kTanh) {
    const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    const __m256 s = _mm256_mul_ps(_mm256_set1_ps(kGeluBeta),
                                   _mm256_fmadd_ps(_mm256_set1_ps(kGeluKappa), x3, x));
    e = rational8(clamp8(s, -kTanhClamp, kTanhClamp), kTanhP, kTanhQ);
  } else {
    const __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(kGeluRsqrt2));
    e = rational8(clamp8(z, -kErfClamp, kErfClamp), kErfP, kErfQ);
  }
  return _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5f)),
                       _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

template <bool kTanh>
void run(size_t n, const float* x, float* y) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = gelu8<kTanh>(_mm256_loadu_ps(x + i));
    const __m256 b = gelu8<kTanh>(_mm256_loadu_ps(x + i + 8));
    _mm256_storeu_ps(y + i, a);
    _mm256_storeu_ps(y + i + 8, b);
  }
  for (; i < n; i += 8) {
    const size_t left = n - i < 8 ? n - i : 8;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left)), lane);
    _mm256_maskstore_ps(y + i, mask, gelu8<kTanh>(_mm256_maskload_ps(x + i, mask)));
  }
}

}  // namespace

void f32_vgelu__avx2(size_t n, const float* x, float* y, int tanh_form) {
  if (tanh_form)
    run<true>(n, x, y);
  else
    run<false>(n, x, y);
}

}  // namespace npq
