// ARMv8.2 dot-product depthwise convolution: 16-channel blocks, taps in groups
// of four (G = 4), one SDOT per 4 channels x 4 taps.
//
// SDOT multiplies s8 by s8, so the transform shifts inputs to s8,
// x' = x ^ 0x80 = x - 128, and the row kernel undoes the shift with the weight
// sums: acc = sum x'*w + (128 - xz)*wsum. Exact for every u8 input and s8
// weight (-128 included): each SDOT lane adds four s8 x s8 products into int32.
// (USDOT would take u8 directly but needs I8MM and is no faster; neoni8mm runs
// this kernel.)
//   transformed block (64 bytes): x'[tap 4q .. 4q+3] of channels 0..15 (VST4 interleave)
//   packed block: int32 wsum[16], then per (ky, q) 64 bytes: w[4q .. 4q+3] of channels 0..15
// 16 bytes of a block are 4 channels x 4 taps: SDOT's lane i is channel i.
#include <arm_neon.h>

#include <cstring>

#include "../ukernel.h"
#include "neon-epilogue.h"

namespace npq {
namespace {

constexpr size_t kCT = 16, kG = 4, kGroup = kCT * kG;  // bytes per block and tap group

size_t blocks_of(size_t channels) { return (channels + kCT - 1) / kCT; }

// One tap's 16 channels shifted to s8 (the last block's n < 16 channels are
// followed by zeros); `pad` (xz shifted) where the tap reads padding.
uint8x16_t load_tap(const uint8_t* src, size_t n, uint8x16_t pad) {
  if (!src) return pad;
  uint8x16_t v;
  if (n >= kCT) {
    v = vld1q_u8(src);
  } else {
    uint8_t buf[kCT] = {0};
    std::memcpy(buf, src, n);
    v = vld1q_u8(buf);
  }
  return veorq_u8(v, vdupq_n_u8(0x80));
}

// acc[j] (channels 4j..4j+3) += one tap group of 16 channels.
void quad_dot(const int8_t* t, const int8x16_t* w, int32x4_t* acc) {
  for (size_t j = 0; j < 4; ++j) acc[j] = vdotq_s32(acc[j], vld1q_s8(t + 16 * j), w[j]);
}

// Output columns 0..ow-1 of one channel block. KH, NQ > 0 fix the kernel shape at
// compile time (3x3 and 3x4: the 3 tap groups' weights stay in 12 registers);
// 0 = any shape, weights loaded per group.
template <size_t KH, size_t NQ>
void block_row(size_t ow, size_t kh_rt, size_t nq_rt, const uint8_t* const* t_rows,
               size_t pos_stride, size_t t_off, const uint8_t* pb, int32_t xz, size_t n,
               uint8_t* y, size_t y_stride, const RequantConsts<4>& k) {
  const size_t kh = KH ? KH : kh_rt, nq = NQ ? NQ : nq_rt;
  int32x4_t init[4];
  for (size_t j = 0; j < 4; ++j)
    init[j] = vmulq_n_s32(vld1q_s32(reinterpret_cast<const int32_t*>(pb) + 4 * j), 128 - xz);
  const int8_t* wq = reinterpret_cast<const int8_t*>(pb + kCT * sizeof(int32_t));
  constexpr size_t kFixed = KH * NQ;
  int8x16_t wreg[kFixed ? 4 * kFixed : 1];
  for (size_t i = 0; i < 4 * kFixed; ++i) wreg[i] = vld1q_s8(wq + 16 * i);
  for (size_t ox = 0; ox < ow; ++ox, y += y_stride) {
    int32x4_t acc[4] = {init[0], init[1], init[2], init[3]};
    for (size_t ky = 0; ky < kh; ++ky) {
      const int8_t* t =
          reinterpret_cast<const int8_t*>(t_rows[ky]) + ox * nq * pos_stride + t_off;
      for (size_t q = 0; q < nq; ++q, t += pos_stride) {
        const size_t grp = ky * nq + q;
        if constexpr (kFixed != 0) {
          quad_dot(t, wreg + 4 * grp, acc);
        } else {
          const int8_t* wg = wq + grp * kGroup;
          const int8x16_t w[4] = {vld1q_s8(wg), vld1q_s8(wg + 16), vld1q_s8(wg + 32),
                                  vld1q_s8(wg + 48)};
          quad_dot(t, w, acc);
        }
      }
    }
    requant_store<4>(acc, k, y, n);
  }
}

}  // namespace

void qu8_dwconv_16c4__neondot_pack(size_t channels, size_t kh, size_t kw, const int8_t* w,
                                   void* packed) {
  const size_t nq = (kw + kG - 1) / kG, taps = kh * kw;
  const size_t block_bytes = kCT * sizeof(int32_t) + kh * nq * kGroup;
  uint8_t* p = static_cast<uint8_t*>(packed);
  for (size_t b = 0; b < blocks_of(channels); ++b, p += block_bytes) {
    std::memset(p, 0, block_bytes);  // padded channels and taps weigh 0
    int32_t wsum[kCT] = {0};
    int8_t* q = reinterpret_cast<int8_t*>(p + kCT * sizeof(int32_t));
    for (size_t ch = 0; ch < kCT && b * kCT + ch < channels; ++ch) {
      const int8_t* wc = w + (b * kCT + ch) * taps;
      for (size_t t = 0; t < taps; ++t) wsum[ch] += wc[t];
      for (size_t ky = 0; ky < kh; ++ky)
        for (size_t kx = 0; kx < kw; ++kx)
          q[(ky * nq + kx / kG) * kGroup + ch * kG + kx % kG] = wc[ky * kw + kx];
    }
    std::memcpy(p, wsum, sizeof(wsum));
  }
}

void qu8_dwconv_16c4__neondot_transform(const DwRowGeometry* g, const uint8_t* x_row,
                                        uint8_t xz, uint8_t* t) {
  const size_t c = g->channels, blocks = blocks_of(c);
  const uint8x16_t pad = vdupq_n_u8(static_cast<uint8_t>(xz ^ 0x80));
  for (size_t ox = 0; ox < g->ow; ++ox)
    for (size_t q = 0; q < g->nq; ++q) {
      const uint8_t* src[kG];
      for (size_t i = 0; i < kG; ++i) {
        const size_t tap = q * kG + i;
        // Unsigned wrap-around: columns left of the row become huge and fail `< w`.
        const size_t col = ox * g->stride + tap * g->dil - g->pad_left;
        src[i] = x_row && tap < g->kw && col < g->w ? x_row + col * c : nullptr;
      }
      for (size_t b = 0; b < blocks; ++b, t += kGroup) {
        const size_t n = c - b * kCT, off = b * kCT;
        uint8x16x4_t v;
        for (size_t i = 0; i < kG; ++i) v.val[i] = load_tap(src[i] ? src[i] + off : nullptr, n, pad);
        vst4q_u8(t, v);  // interleaves the four taps channel by channel
      }
    }
}

void qu8_dwconv_16c4__neondot_row(size_t channels, size_t ow, size_t kh, size_t nq,
                                  const uint8_t* const* t_rows, const void* packed, int32_t xz,
                                  uint8_t* y, size_t y_stride, const RequantEpilogue* ep) {
  const size_t blocks = blocks_of(channels), pos_stride = blocks * kGroup;
  const size_t block_bytes = kCT * sizeof(int32_t) + kh * nq * kGroup;
  for (size_t b = 0; b < blocks; ++b) {
    const uint8_t* pb = static_cast<const uint8_t*>(packed) + b * block_bytes;
    const RequantConsts<4> k = requant_consts<4>(ep, b * kCT);
    const size_t n = channels - b * kCT < kCT ? channels - b * kCT : kCT;
    if (kh == 3 && nq == 1)
      block_row<3, 1>(ow, kh, nq, t_rows, pos_stride, b * kGroup, pb, xz, n, y + b * kCT,
                      y_stride, k);
    else
      block_row<0, 0>(ow, kh, nq, t_rows, pos_stride, b * kGroup, pb, xz, n, y + b * kCT,
                      y_stride, k);
  }
}

}  // namespace npq
