// The oracle: naive, obviously-correct loops implementing the numerics
// contract (docs/quantization.md). Every optimized path must equal these bit
// for bit. Baseline code, no ISA flags, no cleverness.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../params.h"

namespace npq {
namespace ref {

// acc[m*N + n] = sum_k (a[m][k] - a_zp[m]) * w[n][k], computed in int64 and
// returned as int32 (callers keep K <= kMaxK, where it is exact).
void qgemm_acc(size_t M, size_t N, size_t K, const uint8_t* a, size_t a_stride, const int32_t* a_zp,
               const int8_t* w, size_t w_stride, int32_t* acc);

// Static: u8 output with per-column requantization constants (qmath.h).
void qgemm_requant(size_t M, size_t N, size_t K, const uint8_t* a, size_t a_stride, int32_t a_zp,
                   const int8_t* w, size_t w_stride, const float* bias_s, const float* mult,
                   int32_t out_zp, int32_t out_min, int32_t out_max, uint8_t* c, size_t c_stride);

// Dynamic: fp32 output, per-row activation qparams, per-column weight scales and bias.
void qgemm_dequant(size_t M, size_t N, size_t K, const uint8_t* a, size_t a_stride,
                   const int32_t* a_zp, const float* a_scale, const int8_t* w, size_t w_stride,
                   const float* w_scale, const float* bias, float* c, size_t c_stride);

// Direct 2-D convolution, NHWC in and out, weights OIHW (out_c, in_c/groups, kh, kw):
//   acc[n][oy][ox][o] = sum over (c, ky, kx) of (x[n][iy][ix][g*Cg + c] - xz) * w[o][c][ky][kx]
// with iy = oy*stride_h - pad_top + ky*dil_h (ix likewise), g = o / (out_c/groups), and
// padded positions (iy or ix outside the input) contributing 0: PyTorch pads with the
// input zero point. Output size: (in + pads - dil*(k-1) - 1) / stride + 1; the caller
// checks it is >= 1. acc is int64 internally, returned as int32 (K <= kMaxK).
void conv2d_acc(const ConvGeometry& g, size_t batch, size_t h, size_t w, const uint8_t* x,
                int32_t xz, const int8_t* weight, int32_t* acc);

// The same, requantized per output channel (constants from qmath.h requant_constants).
void conv2d_requant(const ConvGeometry& g, size_t batch, size_t h, size_t w, const uint8_t* x,
                    int32_t xz, const int8_t* weight, const float* bias_s, const float* mult,
                    int32_t out_zp, int32_t out_min, int32_t out_max, uint8_t* y);

// q[i] = clamp(nearbyint(fmaf(x[i], fl(1/scale), zp)), qmin, qmax)
void quantize(size_t n, const float* x, float scale, int32_t zp, int32_t qmin, int32_t qmax,
              int32_t* q);

// Returns false if any value is NaN or infinite.
bool minmax(size_t n, const float* x, float* mn, float* mx);

}  // namespace ref
}  // namespace npq
