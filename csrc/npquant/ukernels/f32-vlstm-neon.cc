// NEON float32 LSTM cell update, 4 hidden units per step (ukernel.h f32_vlstm_fn): the
// bits of f32-vlstm-scalar.cc. The tail runs from zero-padded copies.
#include <arm_neon.h>

#include "../ukernel.h"
#include "neon-fmath.h"

namespace npq {
namespace {

// Units [j, j + 4): gate g's pre-activations at gi + g * gs + j (gs: the gate stride).
NPQ_NINLINE void lstm4(const float* gi, const float* gh, size_t gs, const float* c, float* c_out,
                       float* h_out) {
  auto pre = [&](size_t g) { return vaddq_f32(vld1q_f32(gi + g * gs), vld1q_f32(gh + g * gs)); };
  const float32x4_t i = sigmoid4(pre(0));
  const float32x4_t f = sigmoid4(pre(1));
  const float32x4_t g = tanh4(pre(2));
  const float32x4_t o = sigmoid4(pre(3));
  const float32x4_t c1 = vaddq_f32(vmulq_f32(f, vld1q_f32(c)), vmulq_f32(i, g));
  vst1q_f32(c_out, c1);
  vst1q_f32(h_out, vmulq_f32(o, tanh4(c1)));
}

}  // namespace

void f32_vlstm__neon(size_t n, const float* gi, const float* gh, const float* c, float* c_out,
                     float* h_out) {
  size_t j = 0;
  for (; j + 4 <= n; j += 4) lstm4(gi + j, gh + j, n, c + j, c_out + j, h_out + j);
  if (j < n) {
    float ti[16] = {}, th[16] = {}, tc[4] = {}, oc[4], oh[4];
    for (size_t k = j; k < n; ++k) {
      for (size_t g = 0; g < 4; ++g)
        ti[4 * g + k - j] = gi[g * n + k], th[4 * g + k - j] = gh[g * n + k];
      tc[k - j] = c[k];
    }
    lstm4(ti, th, 4, tc, oc, oh);
    for (size_t k = j; k < n; ++k) c_out[k] = oc[k - j], h_out[k] = oh[k - j];
  }
}

}  // namespace npq
