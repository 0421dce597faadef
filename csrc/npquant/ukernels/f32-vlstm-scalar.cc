// The reference float32 LSTM cell update (ukernel.h f32_vlstm_fn): every other
// f32-vlstm kernel computes these bits (scalar-fmath.h: sigmoid and tanh).
#include <cstddef>

#include "../ukernel.h"
#include "scalar-fmath.h"

namespace npq {

void f32_vlstm__scalar(size_t n, const float* gi, const float* gh, const float* c, float* c_out,
                       float* h_out) {
  for (size_t j = 0; j < n; ++j) {
    const float i = sigmoid(gi[j] + gh[j]);
    const float f = sigmoid(gi[n + j] + gh[n + j]);
    const float g = tanh_f32(gi[2 * n + j] + gh[2 * n + j]);
    const float o = sigmoid(gi[3 * n + j] + gh[3 * n + j]);
    const float c1 = f * c[j] + i * g;
    c_out[j] = c1;
    h_out[j] = o * tanh_f32(c1);
  }
}

}  // namespace npq
