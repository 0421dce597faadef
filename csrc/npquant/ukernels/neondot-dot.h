// The K accumulation of the neondot 4x16c4 tile (SDOT by lane), shared by the
// GEMM (qu8-gemm-4x16c4-neondot.cc: rows a + r*a_stride, K = kp) and the
// indirect GEMM (qu8-igemm-4x16c4-neondot.cc: one call per tap, rows from the
// indirection table, K = kc). Layout: PackedLayout{nr=16, kr=4, k_align=4}.
//
// SDOT multiplies s8 by s8 (u8 x s8 needs I8MM), so activations are shifted,
// a' = a ^ 0x80 = a - 128, and the shift is undone with the column sums:
//   acc = sum_k a'*w + (128 - a_zp)*colsum.
// Exact for every u8 activation and s8 weight (-128 included): each SDOT lane
// adds four s8*s8 products (each in [-16256, 16384]) into int32, and a lane
// holds at most K*16384 <= 2^30 for K <= kMaxK. The correction wraps like the
// reference's int32 result (exact modulo 2^32).
//
// Everything here has internal linkage (anonymous namespace), like
// neon-epilogue.h: each includer compiles its own copy with its own -march flags.
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace npq {
namespace {

constexpr size_t kMR = 4, kNR = 16, kKR = 4;
constexpr size_t kGroupBytes = kNR * kKR;  // one k-group of a panel: 64 bytes

// s[r][j] += columns 4j..4j+3 of k-group G (at w) times lane G of av[r].
// One 16-byte load of packed weights holds 4 columns x 4 k.
template <size_t R, int G>
void dot_group(const int8_t* w, const int8x8_t* av, int32x4_t (*s)[kNR / 4]) {
  int8x16_t wv[kNR / 4];
  for (size_t j = 0; j < kNR / 4; ++j) wv[j] = vld1q_s8(w + 16 * j);
  for (size_t r = 0; r < R; ++r)
    for (size_t j = 0; j < kNR / 4; ++j) s[r][j] = vdotq_lane_s32(s[r][j], wv[j], av[r], G);
}

// s[r][j] = 0: the accumulators before the first dot_rows.
template <size_t R>
void zero_acc(int32x4_t (*s)[kNR / 4]) {
  for (size_t r = 0; r < R; ++r)
    for (size_t j = 0; j < kNR / 4; ++j) s[r][j] = vdupq_n_s32(0);
}

// s[r][j] += sum over k < kc of a'[r][k] * (columns 4j..4j+3), where row r's
// kc bytes start at rows[r] and the kc/4 k-groups of weights at w (kc a
// multiple of 4). Returns w past those groups. The main loop takes 8 k (two
// groups) per step: 16 accumulators, 4 rows and 8 weight vectors fit the 32
// registers; 16 k per step would make the compiler hoist 16 weight vectors and
// spill accumulators.
template <size_t R>
const int8_t* dot_rows(size_t kc, const uint8_t* const* rows, const int8_t* w,
                       int32x4_t (*s)[kNR / 4]) {
  const uint8x8_t flip = vdup_n_u8(0x80);
  size_t k = 0;
  for (; k + 8 <= kc; k += 8, w += 2 * kGroupBytes) {
    int8x8_t av[R];
    for (size_t r = 0; r < R; ++r) av[r] = vreinterpret_s8_u8(veor_u8(vld1_u8(rows[r] + k), flip));
    dot_group<R, 0>(w, av, s);
    dot_group<R, 1>(w + kGroupBytes, av, s);
  }
  if (k < kc) {  // one remaining k-group: 4 bytes per row (never reads past kc)
    int8x8_t av[R];
    for (size_t r = 0; r < R; ++r) {
      uint32_t bytes;
      std::memcpy(&bytes, rows[r] + k, sizeof(bytes));
      av[r] = vreinterpret_s8_u8(veor_u8(vreinterpret_u8_u32(vdup_n_u32(bytes)), flip));
    }
    dot_group<R, 0>(w, av, s);
    w += kGroupBytes;
  }
  return w;
}

// acc[r][j] = s[r][j] + (128 - a_zp[r]) * colsum[4j..4j+3].
template <size_t R>
void undo_shift(int32x4_t (*s)[kNR / 4], const int32_t* colsum, const int32_t* a_zp,
                int32x4_t (*acc)[kNR / 4]) {
  for (size_t r = 0; r < R; ++r)
    for (size_t j = 0; j < kNR / 4; ++j)
      acc[r][j] = vmlaq_n_s32(s[r][j], vld1q_s32(colsum + 4 * j), 128 - a_zp[r]);
}

}  // namespace
}  // namespace npq
