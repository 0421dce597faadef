// Plain parameter structs shared by reference/, ukernels/, ops/ and bindings/.
// No ISA-specific code, no inline functions that could be instantiated under
// ISA flags: only data.
#pragma once

#include <cstddef>
#include <cstdint>

namespace npq {

// Largest reduction length for which the int32 accumulator is exact for every
// u8 activation (0..255, any zero point) and s8 weight (-128..127):
// K * 255 * 128 <= 2^31 - 1  =>  K <= 65793. We document a round bound.
constexpr size_t kMaxK = 65536;

// Per-tensor affine quantization of an activation: real = scale * (q - zero_point).
struct QuantParams {
  float scale;
  int32_t zero_point;
};

// Weights packed for one GEMM microkernel family.
//
// Layout (NR columns per panel, K padded to kp = round_up(K, k_align)):
//   for each panel p (columns p*NR .. p*NR+NR-1):
//     int32_t colsum[NR]                      sum_k w[n][k] (0 for padded columns)
//     w[kp/KR][NR][KR]                         K groups of KR weights per column,
//                                              int8, or int16 when w16 is set
// Padded columns and padded k are zero, so kernels may run full panels.
// panel_stride = NR*4 + kp*NR*(w16 ? 2 : 1) bytes (a multiple of 64 for the
// x86 layouts), plus kW127FixWords*4 bytes when w127 is set:
//     uint32_t fix[kW127FixWords]              w127 only: fix[0] = count, then
//                                              (k << 8) | column of each weight
//                                              that was -128 (stored as -127)
struct PackedLayout {
  uint32_t nr;
  uint32_t kr;
  uint32_t k_align;  // kp is a multiple of this (>= kr; AMX needs 64)
  // 1: weights stored sign-extended to int16 (the AVX2 kernel feeds them to
  // vpmaddwd without a widening shuffle per K group); 0: int8.
  uint32_t w16 = 0;
  // 1: the kernel needs weights in [-127, 127] (the AVX2 sign trick). The packer
  // stores -128 as -127 and lists those weights in the panel's fix table (the
  // kernel subtracts their activations once more); a layer with more than
  // kW127FixWords - 1 of them in one panel is packed for the same ISA's
  // full-range kernel instead (dispatch.h gemm_kernel_for_weights).
  uint32_t w127 = 0;
};

// Size of a w127 panel's fix table in uint32 words (count + entries).
constexpr size_t kW127FixWords = 32;

// Epilogue of the static (requantizing) GEMM, per output column n:
//   v = fl(fl(float(acc) + bias_s[n]) * mult[n])
//   q = clamp(nearbyint(v) + out_zp, out_min, out_max)
// bias_s[n] = fl(bias[n] / fl(xs * ws[n])) (0 without bias), mult[n] = fl(fl(xs*ws[n]) / ys).
// Arrays are indexed from the tile's first column and padded to a multiple of NR.
struct RequantEpilogue {
  const float* bias_s;
  const float* mult;
  int32_t out_zp;
  int32_t out_min;
  int32_t out_max;
};

// Epilogue of the dynamic GEMM (fp32 output), per row m and column n:
//   y = fl(fl(float(acc) * fl(a_scale[m] * w_scale[n])) + bias[n])
// a_scale is indexed from the tile's first row, w_scale/bias from its first column.
struct DequantEpilogue {
  const float* a_scale;
  const float* w_scale;
  const float* bias;
};

// 2-D convolution geometry (everything but the batch and the input height/width).
// Activations are NHWC; weights are given as PyTorch's OIHW
// (out_c, in_c / groups, kh, kw). Padding may be asymmetric; padded input reads
// as the input zero point, so it contributes exactly 0 to the accumulator.
struct ConvGeometry {
  size_t in_c, out_c, groups;
  size_t kh, kw;
  size_t stride_h, stride_w;
  size_t dil_h, dil_w;
  size_t pad_top, pad_left, pad_bottom, pad_right;
};

// One output row of a depthwise convolution, as the depthwise transform sees it:
// output column ox, tap group q (taps q*G .. q*G+G-1 of the kernel row) reads input
// columns ox*stride - pad_left + tap*dil of an input row `w` pixels wide.
struct DwRowGeometry {
  size_t channels;  // channels of the input row (= output channels of the conv)
  size_t w;         // input row width in pixels
  size_t ow;        // output columns
  size_t kw;        // taps per kernel row
  size_t nq;        // tap groups per kernel row: ceil(kw / G)
  size_t stride;
  size_t dil;
  size_t pad_left;
};

// Pixels of an input row padded for every tap of every output column (input
// column j - pad_left at padded column j): the row of the direct depthwise
// kernels (tb == 0 in ukernels.inc), which read taps from it in registers.
inline size_t dw_padded_width(const DwRowGeometry& g) {
  return (g.ow - 1) * g.stride + (g.kw - 1) * g.dil + 1;
}

}  // namespace npq
