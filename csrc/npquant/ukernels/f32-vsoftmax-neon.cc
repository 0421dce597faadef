// NEON float32 softmax of one row (ukernel.h f32_vsoftmax_fn): the bits of
// f32-vsoftmax-scalar.cc. Four q registers hold the canonical sum's 16 lanes (element i
// in lane i % 16); the tail runs from padded copies (x with -inf, bias with 0, so the
// padding adds exp(-inf) = +0), so nothing past n is touched.
#include <arm_neon.h>

#include <limits>

#include "../ukernel.h"
#include "neon-fmath.h"

namespace npq {

void f32_vsoftmax__neon(size_t n, const float* x, const float* bias, float* y) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const size_t full = n / 16 * 16;
  float32x4_t vmax = vdupq_n_f32(kNegInf);
  auto v_at = [&](const float* xs, const float* bs, size_t j) {
    const float32x4_t v = vld1q_f32(xs + 4 * j);
    return bs ? vaddq_f32(v, vld1q_f32(bs + 4 * j)) : v;
  };
  for (size_t i = 0; i < full; i += 16)
    for (size_t j = 0; j < 4; ++j) vmax = max_ps4(vmax, v_at(x + i, bias ? bias + i : nullptr, j));
  const Tail16 xt(x + full, n - full, kNegInf),
      bt(bias ? bias + full : x, bias ? n - full : 0, 0.0f);
  if (full < n)
    for (size_t j = 0; j < 4; ++j) vmax = max_ps4(vmax, v_at(xt.v, bias ? bt.v : nullptr, j));
  float lanes4[4];
  vst1q_f32(lanes4, vmax);
  float mx = lanes4[0];
  for (int j = 1; j < 4; ++j) mx = lanes4[j] > mx ? lanes4[j] : mx;  // any order: a max is exact
  const float32x4_t m = vdupq_n_f32(mx);
  float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
  for (size_t i = 0; i < full; i += 16)
    for (size_t j = 0; j < 4; ++j) {
      const float32x4_t e = exp_nonpos4(vsubq_f32(v_at(x + i, bias ? bias + i : nullptr, j), m));
      vst1q_f32(y + i + 4 * j, e);
      acc[j] = vaddq_f32(acc[j], e);
    }
  float et[16];
  if (full < n) {
    for (size_t j = 0; j < 4; ++j) {
      const float32x4_t e = exp_nonpos4(vsubq_f32(v_at(xt.v, bias ? bt.v : nullptr, j), m));
      vst1q_f32(et + 4 * j, e);
      acc[j] = vaddq_f32(acc[j], e);
    }
  }
  const float32x4_t s = vdupq_n_f32(sum16_tree4(acc));
  for (size_t i = 0; i < full; i += 4) vst1q_f32(y + i, vdivq_f32(vld1q_f32(y + i), s));
  if (full < n) {
    for (size_t j = 0; j < 4; ++j) vst1q_f32(et + 4 * j, vdivq_f32(vld1q_f32(et + 4 * j), s));
    for (size_t i = full; i < n; ++i) y[i] = et[i - full];
  }
}

}  // namespace npq
