// Quantized Linear drivers: tiling, A padding, threading, epilogue constants.
// They never branch on an ISA; the kernel comes from dispatch (or the caller,
// for tests that exercise every kernel).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../dispatch.h"
#include "../errors.h"
#include "pack.h"

namespace npq {

// Packs for the process's kernel set (or an explicit kernel); a layer whose
// weights do not fit that kernel's layout (dispatch.h gemm_kernel_for_weights)
// is packed for its fallback, which the drivers below then run.
PackedWeights pack_weights(const int8_t* w, size_t n, size_t k, size_t w_stride);
PackedWeights pack_weights(const int8_t* w, size_t n, size_t k, size_t w_stride,
                           const QGemmKernel& kernel);

// The dispatched kernel for m rows (small M may have its own; same layout).
const QGemmKernel& gemm_kernel_for_rows(size_t m);

// Static Linear: y[m][n] = requant(sum_k (x[m][k] - xz) * w[n][k]) with the
// constants of qmath.h requant_constants(xs, ws, ys, bias). bias may be null.
struct StaticLinearArgs {
  size_t m;
  const uint8_t* x;
  size_t x_stride;
  float xs;
  int32_t xz;
  const float* w_scale;  // n values
  const float* bias;     // n values or null
  float ys;
  int32_t yz;
  int32_t out_min;  // 0, or yz for fused ReLU
  int32_t out_max;  // 255
  uint8_t* y;
  size_t y_stride;
};
void linear_static(const PackedWeights& w, const StaticLinearArgs& args);
void linear_static(const PackedWeights& w, const StaticLinearArgs& args, const QGemmKernel& k);

// The per-channel requantization constants of a static Linear (qmath.h
// requant_constants), padded to the packed width. They depend only on the
// weights' scales, the bias and the input/output scales, so callers that keep
// the layer (the Python binding) compute them once per (xs, ys) pair.
struct RequantConstants {
  float xs, ys;
  std::vector<float> bias_s, mult;
};
// Throws ValueError if a constant is not finite.
RequantConstants requant_constants(const PackedWeights& w, float xs, const float* w_scale, float ys,
                                   const float* bias);
// As above, with constants made by requant_constants for args.xs / args.ys
// (args.w_scale and args.bias are not read).
void linear_static(const PackedWeights& w, const StaticLinearArgs& args, const RequantConstants& c,
                   const QGemmKernel& k);

// Dynamic Linear: fp32 x -> u8 with qparams chosen per tensor (or per row) by
// choose_qparams over [min(x,0), max(x,0)] -> GEMM -> fp32 y with dequant+bias.
// Throws ValueError if x holds NaN or Inf.
struct DynamicLinearArgs {
  size_t m;
  const float* x;
  size_t x_stride;  // in elements
  const float* w_scale;
  const float* bias;  // n values or null
  bool per_row;
  float* y;
  size_t y_stride;  // in elements
  // Quantize to [0, 127] instead of [0, 255]: PyTorch's x86/fbgemm dynamic Linear
  // (reduce_range=True), for bit-identical outputs with it.
  bool reduce_range = false;
};
void linear_dynamic(const PackedWeights& w, const DynamicLinearArgs& args);
void linear_dynamic(const PackedWeights& w, const DynamicLinearArgs& args, const QGemmKernel& k,
                    const QuantizeKernel& q);

// Whole-array quantize with the dispatched kernel (parallel for large n).
void quantize_u8(size_t n, const float* x, float scale, int32_t zp, uint8_t* q);
// Min/max with non-finite detection (parallel for large n); false if non-finite.
bool minmax_f32(size_t n, const float* x, float* mn, float* mx);

}  // namespace npq
