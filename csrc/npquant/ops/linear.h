// Quantized Linear drivers: tiling, A padding, threading, epilogue constants.
// They never branch on an ISA; the kernel comes from dispatch (or the caller,
// for tests that exercise every kernel).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
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

// Whole-array quantize with the dispatched kernel (parallel for large n); false,
// with q partly written, if x holds NaN or Inf.
bool quantize_u8(size_t n, const float* x, float scale, int32_t zp, uint8_t* q);
// Min/max with non-finite detection (parallel for large n); false if non-finite.
bool minmax_f32(size_t n, const float* x, float* mn, float* mx);

// The GEMM kernel of this build called `name` (dispatch.h built_gemm_kernels).
// Throws ValueError if there is none or this CPU cannot run it.
const QGemmKernel& gemm_kernel_by_name(const std::string& name);

// The best quantize kernel this CPU runs whose ISA is not above g's: the
// dynamic Linear's activation quantizer for an explicitly chosen GEMM kernel.
const QuantizeKernel& quantize_kernel_for(const QGemmKernel& g);

// A quantized Linear layer's weights as the kernels read them: int8 weights
// packed for one GEMM kernel, with the per-channel weight scales and bias, and
// the static path's requantization constants for the last (input scale, output
// scale) pair (a layer sees the same pair on every call once calibrated).
// Safe to share between threads; the constants are swapped atomically.
class PackedLinear {
 public:
  // w: (n, k) int8, row stride k. w_scale: n positive finite scales; bias: n
  // finite values, or empty for none (the caller checks both). kernel: a
  // kernel to pack for and always run (tests), or nullptr for the process's
  // kernels (the small-M kernel for few rows). Weights the kernel's layout
  // cannot hold (w127 kernels, -128 weights) run on its fallback (dispatch.h).
  PackedLinear(const int8_t* w, size_t n, size_t k, std::vector<float> w_scale,
               std::vector<float> bias, const QGemmKernel* kernel);

  size_t n() const { return w_.n(); }
  size_t k() const { return w_.k(); }
  size_t bytes() const { return w_.bytes(); }
  // The kernel the layer runs on (without an explicit kernel, the small-M
  // kernel may run instead for few rows).
  const QGemmKernel& kernel() const { return kernel_; }

  // y (m, n) uint8 = the static Linear of x (m, k) uint8, both C-contiguous
  // (linear_static; relu fuses ReLU). Throws ValueError for scales whose
  // requantization constants are not finite.
  void run_static(size_t m, const uint8_t* x, float xs, int32_t xz, float ys, int32_t yz, bool relu,
                  uint8_t* y) const;
  // y (m, n) float32 = the dynamic Linear of x (m, k) float32, both
  // C-contiguous (linear_dynamic). Throws ValueError if x holds NaN or Inf.
  void run_dynamic(size_t m, const float* x, bool per_row, bool reduce_range, float* y) const;

 private:
  const float* bias_or_null() const { return bias_.empty() ? nullptr : bias_.data(); }
  std::shared_ptr<const RequantConstants> requant(float xs, float ys) const;

  std::vector<float> w_scale_, bias_;
  bool explicit_kernel_;
  QGemmKernel kernel_;
  PackedWeights w_;
  mutable std::shared_ptr<const RequantConstants> constants_;  // atomic access only
};

}  // namespace npq
