// The reference float32 LayerNorm of one row (ukernel.h f32_layernorm_fn): every other
// f32-layernorm kernel computes these bits (scalar-fmath.h: the canonical sum).
#include <cmath>
#include <cstddef>

#include "../ukernel.h"
#include "scalar-fmath.h"

namespace npq {

void f32_layernorm__scalar(size_t n, const float* x, const float* gamma, const float* beta,
                           float eps, float* y) {
  const float count = static_cast<float>(n);
  float lanes[16] = {};
  for (size_t i = 0; i < n; ++i) lanes[i & 15] = lanes[i & 15] + x[i];
  const float m0 = sum16_tree(lanes) / count;
  float sd[16] = {}, sq[16] = {};
  for (size_t i = 0; i < n; ++i) {
    const float d = x[i] - m0;
    sd[i & 15] = sd[i & 15] + d;
    sq[i & 15] = std::fma(d, d, sq[i & 15]);
  }
  const float c = sum16_tree(sd) / count;
  const float mean = m0 + c;
  const float var = max_ps(0.0f, sum16_tree(sq) / count - c * c);
  const float rstd = 1.0f / std::sqrt(var + eps);
  for (size_t i = 0; i < n; ++i) {
    float v = (x[i] - mean) * rstd;
    if (gamma) v = v * gamma[i];
    if (beta) v = v + beta[i];
    y[i] = v;
  }
}

}  // namespace npq
