// The aarch64 depthwise kernels' common part: 16-channel blocks with G taps
// per group, s8-shifted inputs, weight sums for the shift. The two kernels
// (qu8-dwconv-16c2-neon.cc, G = 2, SMULL + SADALP; qu8-dwconv-16c4-neondot.cc,
// G = 4, SDOT) differ only in G and in the multiply-add of one tap group,
// which each passes in as Madd (compiled under its own flags).
//
// The transform shifts inputs to s8, x' = x ^ 0x80 = x - 128, and the row
// kernel undoes the shift with the weight sums: acc = sum x'*w + (128 - xz)*wsum.
//   transformed block (16*G bytes): x'[tap Gq .. Gq+G-1] of channels 0..15,
//     interleaved channel by channel (one ST2 / ST4 per block)
//   packed block: int32 wsum[16], then per (ky, q) 16*G bytes: w[Gq .. Gq+G-1]
//     of channels 0..15, interleaved the same way
//
// Everything here has internal linkage (anonymous namespace), like
// neon-epilogue.h: each includer compiles its own copy with its own -march flags.
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../ukernel.h"
#include "neon-epilogue.h"

namespace npq {
namespace {

constexpr size_t kCT = 16;  // channels per block

// Multiply-add of one tap group: acc[j] (channels 4j..4j+3) += the group's
// 16*G transformed bytes at t times its G weight vectors w[0..G-1].
using DwMadd = void (*)(const int8_t* t, const int8x16_t* w, int32x4_t* acc);

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

template <size_t G>
void dw_pack(size_t channels, size_t kh, size_t kw, const int8_t* w, void* packed) {
  constexpr size_t kGroup = kCT * G;
  const size_t nq = (kw + G - 1) / G, taps = kh * kw;
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
          q[(ky * nq + kx / G) * kGroup + ch * G + kx % G] = wc[ky * kw + kx];
    }
    std::memcpy(p, wsum, sizeof(wsum));
  }
}

// Stores G tap vectors interleaved channel by channel (ST2 / ST4).
template <size_t G>
void store_interleaved(uint8_t* t, const uint8x16_t* v) {
  static_assert(G == 2 || G == 4, "ST2 or ST4");
  if constexpr (G == 2) {
    vst2q_u8(t, (uint8x16x2_t{{v[0], v[1]}}));
  } else {
    vst4q_u8(t, (uint8x16x4_t{{v[0], v[1], v[2], v[3]}}));
  }
}

template <size_t G>
void dw_transform(const DwRowGeometry* g, const uint8_t* x_row, uint8_t xz, uint8_t* t) {
  const size_t c = g->channels, blocks = blocks_of(c);
  const uint8x16_t pad = vdupq_n_u8(static_cast<uint8_t>(xz ^ 0x80));
  for (size_t ox = 0; ox < g->ow; ++ox)
    for (size_t q = 0; q < g->nq; ++q) {
      const uint8_t* src[G];
      for (size_t i = 0; i < G; ++i) {
        const size_t tap = q * G + i;
        // Unsigned wrap-around: columns left of the row become huge and fail `< w`.
        const size_t col = ox * g->stride + tap * g->dil - g->pad_left;
        src[i] = x_row && tap < g->kw && col < g->w ? x_row + col * c : nullptr;
      }
      for (size_t b = 0; b < blocks; ++b, t += kCT * G) {
        const size_t n = c - b * kCT, off = b * kCT;
        uint8x16_t v[G];
        for (size_t i = 0; i < G; ++i) v[i] = load_tap(src[i] ? src[i] + off : nullptr, n, pad);
        store_interleaved<G>(t, v);
      }
    }
}

// Output columns 0..ow-1 of one channel block. KH, NQ > 0 fix the kernel shape at
// compile time (3 rows of 3 or 4 taps: 3*NQ groups of G weight vectors, 12
// registers for G = 2 and G = 4, loaded once); 0 = any shape, weights loaded
// per group.
template <size_t G, DwMadd Madd, size_t KH, size_t NQ>
void block_row(size_t ow, size_t kh_rt, size_t nq_rt, const uint8_t* const* t_rows,
               size_t pos_stride, size_t t_off, const uint8_t* pb, int32_t xz, size_t n, uint8_t* y,
               size_t y_stride, const RequantConsts<4>& k) {
  constexpr size_t kGroup = kCT * G;
  const size_t kh = KH ? KH : kh_rt, nq = NQ ? NQ : nq_rt;
  int32x4_t init[4];
  for (size_t j = 0; j < 4; ++j)
    init[j] = vmulq_n_s32(vld1q_s32(reinterpret_cast<const int32_t*>(pb) + 4 * j), 128 - xz);
  const int8_t* wq = reinterpret_cast<const int8_t*>(pb + kCT * sizeof(int32_t));
  constexpr size_t kFixed = KH * NQ;
  int8x16_t wreg[kFixed ? G * kFixed : 1];
  for (size_t i = 0; i < G * kFixed; ++i) wreg[i] = vld1q_s8(wq + 16 * i);
  for (size_t ox = 0; ox < ow; ++ox, y += y_stride) {
    int32x4_t acc[4] = {init[0], init[1], init[2], init[3]};
    for (size_t ky = 0; ky < kh; ++ky) {
      const int8_t* t = reinterpret_cast<const int8_t*>(t_rows[ky]) + ox * nq * pos_stride + t_off;
      for (size_t q = 0; q < nq; ++q, t += pos_stride) {
        const size_t grp = ky * nq + q;
        if constexpr (kFixed != 0) {
          Madd(t, wreg + G * grp, acc);
        } else {
          int8x16_t w[G];
          for (size_t i = 0; i < G; ++i) w[i] = vld1q_s8(wq + grp * kGroup + 16 * i);
          Madd(t, w, acc);
        }
      }
    }
    requant_store<4>(acc, k, y, n);
  }
}

// All channel blocks of one output row; 3x3 kernels take the fixed-shape path.
template <size_t G, DwMadd Madd>
void dw_row(size_t channels, size_t ow, size_t kh, size_t nq, const uint8_t* const* t_rows,
            const void* packed, int32_t xz, uint8_t* y, size_t y_stride,
            const RequantEpilogue* ep) {
  constexpr size_t kGroup = kCT * G, kNq3 = (3 + G - 1) / G;
  const size_t blocks = blocks_of(channels), pos_stride = blocks * kGroup;
  const size_t block_bytes = kCT * sizeof(int32_t) + kh * nq * kGroup;
  for (size_t b = 0; b < blocks; ++b) {
    const uint8_t* pb = static_cast<const uint8_t*>(packed) + b * block_bytes;
    const RequantConsts<4> k = requant_consts<4>(ep, b * kCT);
    const size_t n = channels - b * kCT < kCT ? channels - b * kCT : kCT;
    if (kh == 3 && nq == kNq3)
      block_row<G, Madd, 3, kNq3>(ow, kh, nq, t_rows, pos_stride, b * kGroup, pb, xz, n,
                                  y + b * kCT, y_stride, k);
    else
      block_row<G, Madd, 0, 0>(ow, kh, nq, t_rows, pos_stride, b * kGroup, pb, xz, n, y + b * kCT,
                               y_stride, k);
  }
}

}  // namespace
}  // namespace npq
