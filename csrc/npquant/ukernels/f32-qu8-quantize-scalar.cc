// Portable min/max and quantize (fp32 -> u8).
#include <cmath>

#include "../qmath.h"
#include "../ukernel.h"

namespace npq {

bool f32_minmax__scalar(size_t n, const float* x, float* out_min, float* out_max) {
  float lo = x[0], hi = x[0];
  // x - x is 0 for finite x and NaN for NaN/Inf: one check for both.
  float nonfinite = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
    nonfinite += x[i] - x[i];
  }
  *out_min = lo;
  *out_max = hi;
  return nonfinite == 0.0f;
}

void f32_qu8_quantize__scalar(size_t n, const float* x, float inv_scale, int32_t zp, uint8_t* q) {
  for (size_t i = 0; i < n; ++i)
    q[i] = static_cast<uint8_t>(quantize_one(x[i], inv_scale, zp, 0, 255));
}

}  // namespace npq
