// NEON float32 LayerNorm of one row (ukernel.h f32_layernorm_fn): the bits of
// f32-layernorm-scalar.cc. Four q registers hold each canonical sum's 16 lanes (element
// i in lane i % 16); the tail runs from padded copies (x with 0 for the sum, with m0 for
// the deviations, so the padding adds +0).
#include <arm_neon.h>

#include <cmath>

#include "../ukernel.h"
#include "neon-fmath.h"

namespace npq {

void f32_layernorm__neon(size_t n, const float* x, const float* gamma, const float* beta, float eps,
                         float* y) {
  const float count = static_cast<float>(n);
  const size_t full = n / 16 * 16, rest = n - full;
  const float32x4_t zero = vdupq_n_f32(0.0f);
  float32x4_t acc[4] = {zero, zero, zero, zero};
  for (size_t i = 0; i < full; i += 16)
    for (size_t j = 0; j < 4; ++j) acc[j] = vaddq_f32(acc[j], vld1q_f32(x + i + 4 * j));
  if (rest) {
    const Tail16 t(x + full, rest, 0.0f);
    for (size_t j = 0; j < 4; ++j) acc[j] = vaddq_f32(acc[j], t.q(j));
  }
  const float m0 = sum16_tree4(acc) / count;
  const float32x4_t vm0 = vdupq_n_f32(m0);
  float32x4_t sd[4] = {zero, zero, zero, zero}, sq[4] = {zero, zero, zero, zero};
  auto dev = [&](float32x4_t v, size_t j) {
    const float32x4_t d = vsubq_f32(v, vm0);
    sd[j] = vaddq_f32(sd[j], d);
    sq[j] = vfmaq_f32(sq[j], d, d);
  };
  for (size_t i = 0; i < full; i += 16)
    for (size_t j = 0; j < 4; ++j) dev(vld1q_f32(x + i + 4 * j), j);
  if (rest) {
    const Tail16 t(x + full, rest, m0);
    for (size_t j = 0; j < 4; ++j) dev(t.q(j), j);
  }
  const float c = sum16_tree4(sd) / count;
  const float sqn = sum16_tree4(sq) / count - c * c;
  const float var = 0.0f > sqn ? 0.0f : sqn;  // max_ps(0, sqn)
  const float32x4_t vmean = vdupq_n_f32(m0 + c);
  const float32x4_t rstd = vdupq_n_f32(1.0f / std::sqrt(var + eps));
  auto norm = [&](const float* xs, const float* gs, const float* bs, float* ys) {
    float32x4_t v = vmulq_f32(vsubq_f32(vld1q_f32(xs), vmean), rstd);
    if (gs) v = vmulq_f32(v, vld1q_f32(gs));
    if (bs) v = vaddq_f32(v, vld1q_f32(bs));
    vst1q_f32(ys, v);
  };
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    norm(x + i, gamma ? gamma + i : nullptr, beta ? beta + i : nullptr, y + i);
  if (i < n) {
    float xs[4] = {}, gs[4] = {}, bs[4] = {}, ys[4];
    for (size_t k = i; k < n; ++k) {
      xs[k - i] = x[k];
      if (gamma) gs[k - i] = gamma[k];
      if (beta) bs[k - i] = beta[k];
    }
    norm(xs, gamma ? gs : nullptr, beta ? bs : nullptr, ys);
    for (size_t k = i; k < n; ++k) y[k] = ys[k - i];
  }
}

}  // namespace npq
