// The reference float32 GRU cell update (ukernel.h f32_vgru_fn): every other f32-vgru
// kernel computes these bits (scalar-fmath.h: sigmoid and tanh).
#include <cstddef>

#include "../ukernel.h"
#include "scalar-fmath.h"

namespace npq {

void f32_vgru__scalar(size_t n, const float* gi, const float* gh, const float* h, float* h_out) {
  for (size_t j = 0; j < n; ++j) {
    const float r = sigmoid(gi[j] + gh[j]);
    const float z = sigmoid(gi[n + j] + gh[n + j]);
    const float nn = tanh_f32(gh[2 * n + j] * r + gi[2 * n + j]);
    h_out[j] = (h[j] - nn) * z + nn;
  }
}

}  // namespace npq
