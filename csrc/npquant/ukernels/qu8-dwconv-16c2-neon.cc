// Plain ARMv8 depthwise convolution: 16-channel blocks, taps in pairs (G = 2).
//
// ARMv8 has no u8 x s8 multiply, so the transform shifts inputs to s8,
// x' = x ^ 0x80 = x - 128, and the row kernel undoes the shift with the
// weight sums: acc = sum x'*w + (128 - xz)*wsum. Exact for every u8 input and
// s8 weight (-128 included): SMULL forms 8 s8 x s8 products in int16 (each in
// [-16256, 16384], exact), and SADALP adds each tap pair *widened* to int32, so
// no int16 sum ever forms (as in qu8-gemm-4x4c8-neon.cc).
//   transformed block (32 bytes): s8 pairs (x'[tap 2q], x'[tap 2q+1]) of channels 0..15
//   packed block: int32 wsum[16], then per (ky, q) 32 bytes of s8 pairs (w[2q], w[2q+1])
// One 16-byte vector holds 8 channels x 2 taps: SMULL (low half) / SMULL2 (high
// half) + SADALP give 4 channels' int32 sums each, in natural channel order.
#include <arm_neon.h>

#include <cstring>

#include "../ukernel.h"
#include "neon-epilogue.h"

namespace npq {
namespace {

constexpr size_t kCT = 16, kG = 2, kGroup = kCT * kG;  // bytes per block and tap group

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
void pair_madd(const int8_t* t, const int8x16_t* w, int32x4_t* acc) {
  const int8x16_t t0 = vld1q_s8(t), t1 = vld1q_s8(t + 16);
  acc[0] = vpadalq_s16(acc[0], vmull_s8(vget_low_s8(t0), vget_low_s8(w[0])));
  acc[1] = vpadalq_s16(acc[1], vmull_high_s8(t0, w[0]));
  acc[2] = vpadalq_s16(acc[2], vmull_s8(vget_low_s8(t1), vget_low_s8(w[1])));
  acc[3] = vpadalq_s16(acc[3], vmull_high_s8(t1, w[1]));
}

// Output columns 0..ow-1 of one channel block. KH, NQ > 0 fix the kernel shape at
// compile time (3x3: the 6 tap groups' weights stay in 12 registers); 0 = any.
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
  int8x16_t wreg[kFixed ? 2 * kFixed : 1];
  for (size_t i = 0; i < 2 * kFixed; ++i) wreg[i] = vld1q_s8(wq + 16 * i);
  for (size_t ox = 0; ox < ow; ++ox, y += y_stride) {
    int32x4_t acc[4] = {init[0], init[1], init[2], init[3]};
    for (size_t ky = 0; ky < kh; ++ky) {
      const int8_t* t =
          reinterpret_cast<const int8_t*>(t_rows[ky]) + ox * nq * pos_stride + t_off;
      for (size_t q = 0; q < nq; ++q, t += pos_stride) {
        const size_t grp = ky * nq + q;
        if constexpr (kFixed != 0) {
          pair_madd(t, wreg + 2 * grp, acc);
        } else {
          const int8x16_t w[2] = {vld1q_s8(wq + grp * kGroup), vld1q_s8(wq + grp * kGroup + 16)};
          pair_madd(t, w, acc);
        }
      }
    }
    requant_store<4>(acc, k, y, n);
  }
}

}  // namespace

void qu8_dwconv_16c2__neon_pack(size_t channels, size_t kh, size_t kw, const int8_t* w,
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

void qu8_dwconv_16c2__neon_transform(const DwRowGeometry* g, const uint8_t* x_row, uint8_t xz,
                                     uint8_t* t) {
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
        uint8x16x2_t v;
        v.val[0] = load_tap(src[0] ? src[0] + off : nullptr, n, pad);
        v.val[1] = load_tap(src[1] ? src[1] + off : nullptr, n, pad);
        vst2q_u8(t, v);  // interleaves the two taps channel by channel
      }
    }
}

void qu8_dwconv_16c2__neon_row(size_t channels, size_t ow, size_t kh, size_t nq,
                               const uint8_t* const* t_rows, const void* packed, int32_t xz,
                               uint8_t* y, size_t y_stride, const RequantEpilogue* ep) {
  const size_t blocks = blocks_of(channels), pos_stride = blocks * kGroup;
  const size_t block_bytes = kCT * sizeof(int32_t) + kh * nq * kGroup;
  for (size_t b = 0; b < blocks; ++b) {
    const uint8_t* pb = static_cast<const uint8_t*>(packed) + b * block_bytes;
    const RequantConsts<4> k = requant_consts<4>(ep, b * kCT);
    const size_t n = channels - b * kCT < kCT ? channels - b * kCT : kCT;
    if (kh == 3 && nq == 2)
      block_row<3, 2>(ow, kh, nq, t_rows, pos_stride, b * kGroup, pb, xz, n, y + b * kCT,
                      y_stride, k);
    else
      block_row<0, 0>(ow, kh, nq, t_rows, pos_stride, b * kGroup, pb, xz, n, y + b * kCT,
                      y_stride, k);
  }
}

}  // namespace npq
