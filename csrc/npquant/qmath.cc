#include "qmath.h"

#include <algorithm>
#include <cmath>

namespace npq {

QuantParams choose_qparams(float min, float max, int32_t qmin, int32_t qmax) {
  min = std::min(min, 0.0f);
  max = std::max(max, 0.0f);
  const double levels = static_cast<double>(qmax - qmin);
  double scale = (static_cast<double>(max) - static_cast<double>(min)) / levels;
  const float scale_f = static_cast<float>(scale);
  if (scale_f == 0.0f || std::isinf(1.0f / scale_f)) scale = 0.1;
  constexpr float kSmallScale = 6.1e-5f;  // PyTorch's SMALL_SCALE_THRESHOLD
  if (scale < kSmallScale) {
    const float old_scale = static_cast<float>(scale);
    scale = kSmallScale;
    if (min == 0.0f) {
      max = kSmallScale * static_cast<float>(qmax - qmin);
    } else if (max == 0.0f) {
      min = -kSmallScale * static_cast<float>(qmax - qmin);
    } else {
      const float amp = kSmallScale / old_scale;
      min *= amp;
      max *= amp;
    }
  }
  const double zp_lo = qmin - min / scale;
  const double zp_hi = qmax - max / scale;
  const double err_lo = std::abs(qmin) - std::abs(min / scale);
  const double err_hi = std::abs(qmax) - std::abs(max / scale);
  const double zp0 = err_lo < err_hi ? zp_lo : zp_hi;
  int32_t zp;
  if (zp0 < qmin) {
    zp = qmin;
  } else if (zp0 > qmax) {
    zp = qmax;
  } else {
    zp = static_cast<int32_t>(std::nearbyint(zp0));
  }
  return QuantParams{static_cast<float>(scale), zp};
}

int32_t quantize_one(float x, float inv_scale, int32_t zp, int32_t qmin, int32_t qmax) {
  const float v = std::nearbyint(std::fmaf(x, inv_scale, static_cast<float>(zp)));
  // Compare in float so values beyond int32 saturate instead of overflowing.
  if (!(v >= static_cast<float>(qmin))) return qmin;
  if (v >= static_cast<float>(qmax)) return qmax;
  return static_cast<int32_t>(v);
}

bool requant_constants(size_t n, float xs, const float* ws, float ys, const float* bias,
                       float* bias_s, float* mult) {
  // Two plain loops (no early exit) so the compiler vectorizes the divisions:
  // this runs on every static call.
  for (size_t i = 0; i < n; ++i) {
    const float s = xs * ws[i];
    mult[i] = s / ys;
    bias_s[i] = bias ? bias[i] / s : 0.0f;
  }
  int ok = 1;
  for (size_t i = 0; i < n; ++i) {
    // With finite bias_s, fl(acc + bias_s) is finite (|acc| < 2^31 is far below
    // the spacing of floats near FLT_MAX), so v = fl(sum * mult) may be +-Inf
    // (the clamp maps it to lo/hi) but never NaN. NaN fails every comparison.
    ok &= (xs * ws[i] > 0.0f) & (std::fabs(mult[i]) <= 3.40282347e38f) &
          (std::fabs(bias_s[i]) <= 3.40282347e38f);
  }
  return ok != 0;
}

uint8_t requant_one(int32_t acc, float bias_s, float mult, int32_t zp, int32_t lo, int32_t hi) {
  const float v = (static_cast<float>(acc) + bias_s) * mult;
  const float r = std::nearbyint(v);
  // r + zp in float is exact while |r| < 2^24; beyond that the clamp decides anyway.
  if (r >= 1048576.0f) return static_cast<uint8_t>(hi);
  if (r <= -1048576.0f) return static_cast<uint8_t>(lo);
  const int32_t q = static_cast<int32_t>(r) + zp;
  return static_cast<uint8_t>(std::min(std::max(q, lo), hi));
}

float dequant_one(int32_t acc, float xs, float ws, float bias) {
  const float s = xs * ws;
  const float y = static_cast<float>(acc) * s;
  return y + bias;
}

}  // namespace npq
