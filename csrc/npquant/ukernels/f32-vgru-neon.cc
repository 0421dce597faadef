// NEON float32 GRU cell update, 4 hidden units per step (ukernel.h f32_vgru_fn): the bits
// of f32-vgru-scalar.cc. The tail runs from zero-padded copies.
#include <arm_neon.h>

#include "../ukernel.h"
#include "neon-fmath.h"

namespace npq {
namespace {

NPQ_NINLINE void gru4(const float* gi, const float* gh, size_t gs, const float* h, float* h_out) {
  const float32x4_t r = sigmoid4(vaddq_f32(vld1q_f32(gi), vld1q_f32(gh)));
  const float32x4_t z = sigmoid4(vaddq_f32(vld1q_f32(gi + gs), vld1q_f32(gh + gs)));
  const float32x4_t m =
      tanh4(vaddq_f32(vmulq_f32(vld1q_f32(gh + 2 * gs), r), vld1q_f32(gi + 2 * gs)));
  vst1q_f32(h_out, vaddq_f32(vmulq_f32(vsubq_f32(vld1q_f32(h), m), z), m));
}

}  // namespace

void f32_vgru__neon(size_t n, const float* gi, const float* gh, const float* h, float* h_out) {
  size_t j = 0;
  for (; j + 4 <= n; j += 4) gru4(gi + j, gh + j, n, h + j, h_out + j);
  if (j < n) {
    float ti[12] = {}, th[12] = {}, tv[4] = {}, out[4];
    for (size_t k = j; k < n; ++k) {
      for (size_t g = 0; g < 3; ++g)
        ti[4 * g + k - j] = gi[g * n + k], th[4 * g + k - j] = gh[g * n + k];
      tv[k - j] = h[k];
    }
    gru4(ti, th, 4, tv, out);
    for (size_t k = j; k < n; ++k) h_out[k] = out[k - j];
  }
}

}  // namespace npq
