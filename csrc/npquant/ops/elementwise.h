// Quantized elementwise ops as table lookups on 8-bit codes.
//
// With the input and output qparams fixed, the output code of a unary op
// (requantize, Hardswish, a cat operand at other qparams) is a function of
// one input code: a 256-entry table; that of a binary op (add, add_relu, mul)
// is a function of two: a 65,536-entry table (64 KiB, index a << 8 | b).
// The caller builds the tables with the NumPy oracle's own arithmetic
// (python/npquant/nn/quantized/functional_modules.py), so these loops are
// exact by construction and the same on every ISA: they only gather bytes.
// Codes are bytes: int8 (qint8) data is passed as its uint8 bit pattern and
// the tables are indexed by that pattern.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../ukernel.h"

namespace npq {

// y[i] = table[x[i]], table has 256 entries.
void lookup_u8(const uint8_t* x, uint8_t* y, size_t n, const uint8_t* table);

// y[i] = min(max(x[i], lo), hi) (quantized ReLU, ReLU6 and Hardtanh on uint8 codes).
void clamp_u8(const uint8_t* x, uint8_t* y, size_t n, uint8_t lo, uint8_t hi);

// y[i] = table[a[i] << 8 | b[i]], table has 65,536 entries.
void lookup2_u8(const uint8_t* a, const uint8_t* b, uint8_t* y, size_t n, const uint8_t* table);

// One operand per (batch, channel), broadcast over the spatial positions
// (squeeze-and-excitation scaling): a and y are (batch, spatial, channels)
// when channels_last, else (batch, channels, spatial); b is (batch, channels).
// y = table[a << 8 | b].
void lookup2_channel_u8(const uint8_t* a, const uint8_t* b, uint8_t* y, size_t batch,
                        size_t spatial, size_t channels, bool channels_last, const uint8_t* table);

// Concatenation along the innermost axis: part i is a (rows, channels) array,
// copied, requantized by the AddKernel (requant, uint8 codes; b = nullptr) or
// mapped through its 256-entry table into columns [offset_i, offset_i +
// channels) of y, (rows, sum of channels).
struct CatPart {
  const uint8_t* x;
  size_t channels;
  const uint8_t* table;       // nullptr: see requant
  const QAddParams* requant;  // nullptr too: copy unchanged
};
void cat_rows_u8(const CatPart* parts, size_t nparts, size_t rows, uint8_t* y);

// Channel shuffle of channels-last rows (ShuffleNet): each of the rows holds
// groups x per_group channels; y[r][j * groups + g] = x[r][g * per_group + j]
// (torch's view (groups, per_group) / transpose / view, on one pixel's channels).
void channel_shuffle_u8(const uint8_t* x, uint8_t* y, size_t rows, size_t groups, size_t per_group);

// NCHW -> NHWC copy of 8-bit codes: x is (batch, channels, pixels), y is
// (batch, pixels, channels).
void nchw_to_nhwc_u8(const uint8_t* x, uint8_t* y, size_t batch, size_t channels, size_t pixels);

// The reverse: x is (batch, pixels, channels), y is (batch, channels, pixels) (a
// quantized Flatten of an NHWC activation, which flattens in NCHW order).
void nhwc_to_nchw_u8(const uint8_t* x, uint8_t* y, size_t batch, size_t pixels, size_t channels);

// Channels [start, start + count) of every row of `channels` bytes: x is (rows,
// channels), y is (rows, count) (QTensor.narrow / chunk along NHWC channels).
void channel_range_u8(const uint8_t* x, uint8_t* y, size_t rows, size_t channels, size_t start,
                      size_t count);

// The AddKernel constants of add / add_relu with operands at (a_scale, a_zp)
// and (b_scale, b_zp) and the output at (scale, zp), in the NumPy path's float32
// arithmetic: premul = fl(s * -zp), inv_scale = fl(1 / scale).
QAddParams qadd_params(float a_scale, int32_t a_zp, float b_scale, int32_t b_zp, float scale,
                       int32_t zp, bool relu);
// The AddKernel constants that requantize codes at (a_scale, a_zp) to (scale,
// zp) (run with b = nullptr, as cat_rows_u8 does).
QAddParams requant_params(float a_scale, int32_t a_zp, float scale, int32_t zp);

// Quantized add / add_relu of n uint8 codes with the process's AddKernel
// (dispatch.h), in parallel chunks. Requires kernels().add.vadd != nullptr.
void qadd_u8(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y, const QAddParams& p);

// The MulKernel constants of mul with operands at (a_scale, a_zp) and
// (b_scale, b_zp) and the output at (scale, zp), in the NumPy path's float32
// arithmetic: multiplier = fl(fl(a_scale * b_scale) * fl(1 / scale)).
QMulParams qmul_params(float a_scale, int32_t a_zp, float b_scale, int32_t b_zp, float scale,
                       int32_t zp);

// Quantized mul of uint8 codes with the process's MulKernel (requires
// kernels().mul.vmul): same shape (n codes each), or channels-last with b one
// code per (batch, channel): a and y (batch, spatial, channels), b (batch, channels).
void qmul_u8(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y, const QMulParams& p);
void qmul_channel_u8(size_t batch, size_t spatial, size_t channels, const uint8_t* a,
                     const uint8_t* b, uint8_t* y, const QMulParams& p);

// Float32 GELU of n values with the process's GeluKernel (dispatch.h), in parallel
// chunks; tanh_form selects torch's approximate='tanh'. y may equal x.
void gelu_f32(size_t n, const float* x, float* y, bool tanh_form);

}  // namespace npq
