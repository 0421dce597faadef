// The quantization arithmetic of the numerics contract (docs/quantization.md),
// in one place. Baseline code (no ISA flags), used by reference/, ops/ and the
// bindings; the Python layer calls it through npquant._C.
#pragma once

#include <cstddef>
#include <cstdint>

#include "params.h"

namespace npq {

// PyTorch's choose_qparams rule (fbgemm::ChooseQuantizationParams without
// reduce_range or preserve_sparsity): range extended to include 0, scale in
// double then rounded to float, zero point from the smaller-error end, nudged
// with round-half-even into [qmin, qmax]. Requires min <= max, both finite.
QuantParams choose_qparams(float min, float max, int32_t qmin, int32_t qmax);

// One element of quantize: clamp(nearbyint(fmaf(x, inv_scale, float(zp))), qmin, qmax)
// with inv_scale = fl(1 / scale).
int32_t quantize_one(float x, float inv_scale, int32_t zp, int32_t qmin, int32_t qmax);

// Per-column requantization constants of the static GEMM for input scale xs,
// weight scales ws[n], output scale ys and an optional float bias (nullptr = none):
//   s = fl(xs * ws[n]);  mult[n] = fl(s / ys);  bias_s[n] = bias ? fl(bias[n] / s) : 0
// Returns false if any constant is not finite (the caller raises).
bool requant_constants(size_t n, float xs, const float* ws, float ys, const float* bias,
                       float* bias_s, float* mult);

// One requantized output: clamp(nearbyint(fl(fl(float(acc) + bias_s) * mult)) + zp, lo, hi),
// computed without int overflow for any finite v.
uint8_t requant_one(int32_t acc, float bias_s, float mult, int32_t zp, int32_t lo, int32_t hi);

// One dequantized output: fl(fl(float(acc) * fl(xs * ws)) + bias).
float dequant_one(int32_t acc, float xs, float ws, float bias);

}  // namespace npq
