// The reference float32 GELU (vgelu-coeffs.h): every other f32-vgelu kernel computes
// these bits. std::fma in every Horner step, as the vector kernels' vfmadd.
#include <cmath>
#include <cstddef>

#include "../ukernel.h"
#include "vgelu-coeffs.h"

namespace npq {

namespace {

inline float clampf(float v, float lo, float hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

template <int NP, int NQ>
inline float rational(float z, const float (&p)[NP], const float (&q)[NQ]) {
  const float u = z * z;
  float pu = p[NP - 1];
  for (int i = NP - 2; i >= 0; --i) pu = std::fma(pu, u, p[i]);
  float qu = q[NQ - 1];
  for (int i = NQ - 2; i >= 0; --i) qu = std::fma(qu, u, q[i]);
  return clampf((z * pu) / qu, -1.0f, 1.0f);
}

}  // namespace

void f32_vgelu__scalar(size_t n, const float* x, float* y, int tanh_form) {
  for (size_t i = 0; i < n; ++i) {
    const float v = x[i];
    float e;
    if (tanh_form) {
      const float s = kGeluBeta * std::fma(kGeluKappa, v * v * v, v);
      e = rational(clampf(s, -kTanhClamp, kTanhClamp), kTanhP, kTanhQ);
    } else {
      e = rational(clampf(v * kGeluRsqrt2, -kErfClamp, kErfClamp), kErfP, kErfQ);
    }
    y[i] = (v * 0.5f) * (1.0f + e);
  }
}

}  // namespace npq
