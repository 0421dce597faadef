// The reference float32 softmax of one row (ukernel.h f32_vsoftmax_fn): every other
// f32-vsoftmax kernel computes these bits (scalar-fmath.h: exp and the canonical sum).
#include <cstddef>
#include <limits>

#include "../ukernel.h"
#include "scalar-fmath.h"

namespace npq {

void f32_vsoftmax__scalar(size_t n, const float* x, const float* bias, float* y) {
  float m = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < n; ++i) m = max_ps(m, bias ? x[i] + bias[i] : x[i]);
  float lanes[16] = {};
  for (size_t i = 0; i < n; ++i) {
    const float e = exp_nonpos((bias ? x[i] + bias[i] : x[i]) - m);
    y[i] = e;
    lanes[i & 15] = lanes[i & 15] + e;
  }
  const float s = sum16_tree(lanes);
  for (size_t i = 0; i < n; ++i) y[i] = y[i] / s;
}

}  // namespace npq
