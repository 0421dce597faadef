// Quantized 2-D max and average pooling on channels-last (NHWC) codes, with
// PyTorch's channels-last integer arithmetic (docs/quantization.md). The
// per-position constants (multipliers, counts of real elements) come from the
// caller, which computes them once in one place (python/npquant/nn/quantized/
// pooling.py); this file only sums, rounds and clamps, channel-innermost so
// the compiler vectorizes the loops.
#pragma once

#include <cstddef>
#include <cstdint>

namespace npq {

struct Pool2dGeometry {
  size_t batch, h, w, c;  // input NHWC
  size_t oh, ow;          // output spatial size (the caller applies ceil_mode)
  size_t kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
};

// y[n][oy][ox][c] = max over the window's real elements (qmin where there is none).
template <class T>
void max_pool2d_nhwc(const Pool2dGeometry& g, const T* x, T* y);

// Average pooling: acc = sum of (code - zp) over the window's real elements
// (size[oy*ow+ox] of them); channels [0, vector_channels) get
// clamp(nearbyint(fl(float(acc) * mult[p])) + zp), the others
// clamp(nearbyint(float(fl64(fl64(acc * inv[p]) + zp)))) (see pooling.py).
struct AvgPool2dArgs {
  const float* mult;    // oh*ow
  const float* inv;     // oh*ow
  const int32_t* size;  // oh*ow
  int32_t zp, qmin, qmax;
  size_t vector_channels;
};
template <class T>
void avg_pool2d_nhwc(const Pool2dGeometry& g, const AvgPool2dArgs& a, const T* x, T* y);

// Adaptive average pooling: output row oy averages input rows [hs[oy], he[oy]),
// column ox columns [ws[ox], we[ox]) (bins may overlap); acc = sum of (code - zp)
// over the bin (size[p] = its area), and every channel gets PyTorch's
// channels-last quantize_vec rounding
// clamp(nearbyint(float(fl64(fl64(acc * inv[p]) + zp)))) (pooling.py's fma_round).
// The caller keeps bin areas <= 2^23 so the int32 sums are exact.
struct AdaptiveAvgPool2dArgs {
  const int32_t *hs, *he, *ws, *we;  // oh, oh, ow, ow
  const float* inv;                  // oh*ow
  int32_t zp, qmin, qmax;
};
template <class T>
void adaptive_avg_pool2d_nhwc(const Pool2dGeometry& g, const AdaptiveAvgPool2dArgs& a, const T* x,
                              T* y);

}  // namespace npq
