// Plain ARMv8 depthwise convolution: 16-channel blocks, taps in pairs (G = 2).
// The blocks, the transform, the packing and the row loop are neon-dwconv.h's;
// this file supplies the multiply-add of one tap pair.
//
// ARMv8 has no u8 x s8 multiply, so inputs are shifted to s8 (x' = x - 128) and
// the shift is undone with the weight sums. Exact for every u8 input and s8
// weight (-128 included): SMULL forms 8 s8 x s8 products in int16 (each in
// [-16256, 16384], exact), and SADALP adds each tap pair *widened* to int32, so
// no int16 sum ever forms (as in qu8-gemm-4x4c8-neon.cc).
//   transformed block (32 bytes): s8 pairs (x'[tap 2q], x'[tap 2q+1]) of channels 0..15
//   packed block: int32 wsum[16], then per (ky, q) 32 bytes of s8 pairs (w[2q], w[2q+1])
// One 16-byte vector holds 8 channels x 2 taps: SMULL (low half) / SMULL2 (high
// half) + SADALP give 4 channels' int32 sums each, in natural channel order.
#include <arm_neon.h>

#include "../ukernel.h"
#include "neon-dwconv.h"

namespace npq {
namespace {

constexpr size_t kG = 2;

// acc[j] (channels 4j..4j+3) += one tap group of 16 channels.
void pair_madd(const int8_t* t, const int8x16_t* w, int32x4_t* acc) {
  const int8x16_t t0 = vld1q_s8(t), t1 = vld1q_s8(t + 16);
  acc[0] = vpadalq_s16(acc[0], vmull_s8(vget_low_s8(t0), vget_low_s8(w[0])));
  acc[1] = vpadalq_s16(acc[1], vmull_high_s8(t0, w[0]));
  acc[2] = vpadalq_s16(acc[2], vmull_s8(vget_low_s8(t1), vget_low_s8(w[1])));
  acc[3] = vpadalq_s16(acc[3], vmull_high_s8(t1, w[1]));
}

}  // namespace

void qu8_dwconv_16c2__neon_pack(size_t channels, size_t kh, size_t kw, const int8_t* w,
                                void* packed) {
  dw_pack<kG>(channels, kh, kw, w, packed);
}

void qu8_dwconv_16c2__neon_transform(const DwRowGeometry* g, const uint8_t* x_row, uint8_t xz,
                                     uint8_t* t) {
  dw_transform<kG>(g, x_row, xz, t);
}

void qu8_dwconv_16c2__neon_row(size_t channels, size_t ow, size_t kh, size_t nq,
                               const uint8_t* const* t_rows, const void* packed, int32_t xz,
                               uint8_t* y, size_t y_stride, const RequantEpilogue* ep) {
  dw_row<kG, pair_madd>(channels, ow, kh, nq, t_rows, packed, xz, y, y_stride, ep);
}

}  // namespace npq
