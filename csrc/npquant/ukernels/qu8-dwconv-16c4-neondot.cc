// ARMv8.2 dot-product depthwise convolution: 16-channel blocks, taps in groups
// of four (G = 4), one SDOT per 4 channels x 4 taps. The blocks, the transform,
// the packing and the row loop are neon-dwconv.h's; this file supplies the
// multiply-add of one tap group.
//
// SDOT multiplies s8 by s8, so inputs are shifted to s8 (x' = x - 128) and the
// shift is undone with the weight sums. Exact for every u8 input and s8 weight
// (-128 included): each SDOT lane adds four s8 x s8 products into int32.
// (USDOT would take u8 directly but needs I8MM and is no faster; neoni8mm runs
// this kernel.)
//   transformed block (64 bytes): x'[tap 4q .. 4q+3] of channels 0..15 (VST4 interleave)
//   packed block: int32 wsum[16], then per (ky, q) 64 bytes: w[4q .. 4q+3] of channels 0..15
// 16 bytes of a block are 4 channels x 4 taps: SDOT's lane i is channel i.
#include <arm_neon.h>

#include "../ukernel.h"
#include "neon-dwconv.h"

namespace npq {
namespace {

constexpr size_t kG = 4;

// acc[j] (channels 4j..4j+3) += one tap group of 16 channels.
void quad_dot(const int8_t* t, const int8x16_t* w, int32x4_t* acc) {
  for (size_t j = 0; j < 4; ++j) acc[j] = vdotq_s32(acc[j], vld1q_s8(t + 16 * j), w[j]);
}

}  // namespace

void qu8_dwconv_16c4__neondot_pack(size_t channels, size_t kh, size_t kw, const int8_t* w,
                                   void* packed) {
  dw_pack<kG>(channels, kh, kw, w, packed);
}

void qu8_dwconv_16c4__neondot_transform(const DwRowGeometry* g, const uint8_t* x_row, uint8_t xz,
                                        uint8_t* t) {
  dw_transform<kG>(g, x_row, xz, t);
}

void qu8_dwconv_16c4__neondot_row(size_t channels, size_t ow, size_t kh, size_t nq,
                                  const uint8_t* const* t_rows, const void* packed, int32_t xz,
                                  uint8_t* y, size_t y_stride, const RequantEpilogue* ep) {
  dw_row<kG, quad_dot>(channels, ow, kh, nq, t_rows, packed, xz, y, y_stride, ep);
}

}  // namespace npq
