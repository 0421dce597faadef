#include <cmath>

#include "../qmath.h"
#include "reference.h"

namespace npq {
namespace ref {

void quantize(size_t n, const float* x, float scale, int32_t zp, int32_t qmin, int32_t qmax,
              int32_t* q) {
  const float inv = 1.0f / scale;
  for (size_t i = 0; i < n; ++i) q[i] = quantize_one(x[i], inv, zp, qmin, qmax);
}

bool minmax(size_t n, const float* x, float* mn, float* mx) {
  bool finite = true;
  float lo = x[0], hi = x[0];
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) finite = false;
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
  }
  *mn = lo;
  *mx = hi;
  return finite;
}

}  // namespace ref
}  // namespace npq
