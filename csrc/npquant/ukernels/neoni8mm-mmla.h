// The K accumulation of the neoni8mm 4x16c8 tile (USMMLA), shared by the GEMM
// (qu8-gemm-4x16c8-neoni8mm.cc: rows a + r*a_stride, K = kp) and the indirect
// GEMM (qu8-igemm-4x16c8-neoni8mm.cc: one call per tap, rows from the
// indirection table, K = kc). Layout: PackedLayout{nr=16, kr=8, k_align=8}.
//
// USMMLA multiplies a 2x8 u8 matrix by the transpose of a 2x8 s8 matrix into a
// 2x2 int32 block: u8 activations times s8 weights directly, so no sign shift:
//   acc = sum_k a*w - a_zp*colsum.
// Exact: 8 products of at most 255*128 per instruction, int32 lanes, and
// |sum| <= K*32640 < 2^31 for K <= kMaxK.
//
// Operands: one 16-byte load of packed weights is columns (2q, 2q+1) x 8 k,
// exactly USMMLA's right operand. The left operand, rows (2p, 2p+1) x 8 k, is
// made by ZIP1/ZIP2 on 64-bit lanes of two rows' 16-byte loads. The 2x2 blocks
// (r0c0, r0c1, r1c0, r1c1) are turned back into rows with the same zips. An
// odd row count R computes its last row pair with the last row twice (the
// caller passes that row's pointer twice, never reading a row beyond R) and
// drops the copy.
//
// Everything here has internal linkage (anonymous namespace), like
// neon-epilogue.h: each includer compiles its own copy with its own -march flags.
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

namespace npq {
namespace {

constexpr size_t kMR = 4, kNR = 16, kKR = 8;
constexpr size_t kGroupBytes = kNR * kKR;  // one k-group of a panel: 128 bytes

// s[p][q] += rows (2p, 2p+1) x columns (2q, 2q+1) for one 8-k group at w.
template <size_t P>
void mmla_group(const int8_t* w, const uint8x16_t* ap, int32x4_t (*s)[kNR / 2]) {
  for (size_t q = 0; q < kNR / 2; ++q) {
    const int8x16_t wv = vld1q_s8(w + 16 * q);
    for (size_t p = 0; p < P; ++p) s[p][q] = vusmmlaq_s32(s[p][q], ap[p], wv);
  }
}

// Row pairs of an R-row tile.
template <size_t R>
constexpr size_t kPairs = (R + 1) / 2;

// s[p][q] = 0: the 2x2 blocks before the first mmla_rows.
template <size_t R>
void zero_blocks(int32x4_t (*s)[kNR / 2]) {
  for (size_t p = 0; p < kPairs<R>; ++p)
    for (size_t q = 0; q < kNR / 2; ++q) s[p][q] = vdupq_n_s32(0);
}

// s[p][q] += rows (2p, 2p+1) x columns (2q, 2q+1) over k < kc, where row i's
// kc bytes start at rows[i] (2P rows, P = kPairs<R>) and the kc/8 k-groups of
// weights at w (kc a multiple of 8). Returns w past those groups. 16 k per
// main-loop step.
template <size_t R>
const int8_t* mmla_rows(size_t kc, const uint8_t* const* rows, const int8_t* w,
                        int32x4_t (*s)[kNR / 2]) {
  constexpr size_t P = kPairs<R>;
  size_t k = 0;
  for (; k + 16 <= kc; k += 16, w += 2 * kGroupBytes) {
    uint8x16_t lo[P], hi[P];
    for (size_t p = 0; p < P; ++p) {
      const uint64x2_t r0 = vreinterpretq_u64_u8(vld1q_u8(rows[2 * p] + k));
      const uint64x2_t r1 = vreinterpretq_u64_u8(vld1q_u8(rows[2 * p + 1] + k));
      lo[p] = vreinterpretq_u8_u64(vzip1q_u64(r0, r1));
      hi[p] = vreinterpretq_u8_u64(vzip2q_u64(r0, r1));
    }
    mmla_group<P>(w, lo, s);
    mmla_group<P>(w + kGroupBytes, hi, s);
  }
  if (k < kc) {  // one remaining 8-k group (never reads past kc)
    uint8x16_t ap[P];
    for (size_t p = 0; p < P; ++p)
      ap[p] = vcombine_u8(vld1_u8(rows[2 * p] + k), vld1_u8(rows[2 * p + 1] + k));
    mmla_group<P>(w, ap, s);
    w += kGroupBytes;
  }
  return w;
}

// acc[r][j] = columns 4j..4j+3 of row r (R rows) from the 2x2 blocks, minus
// a_zp[r] * colsum[4j..4j+3].
template <size_t R>
void blocks_to_rows(int32x4_t (*s)[kNR / 2], const int32_t* colsum, const int32_t* a_zp,
                    int32x4_t (*acc)[kNR / 4]) {
  for (size_t p = 0; p < kPairs<R>; ++p) {
    for (size_t j = 0; j < kNR / 4; ++j) {
      const int64x2_t b0 = vreinterpretq_s64_s32(s[p][2 * j]);
      const int64x2_t b1 = vreinterpretq_s64_s32(s[p][2 * j + 1]);
      const int32x4_t cs = vld1q_s32(colsum + 4 * j);
      acc[2 * p][j] = vmlsq_n_s32(vreinterpretq_s32_s64(vzip1q_s64(b0, b1)), cs, a_zp[2 * p]);
      if (2 * p + 1 < R)
        acc[2 * p + 1][j] =
            vmlsq_n_s32(vreinterpretq_s32_s64(vzip2q_s64(b0, b1)), cs, a_zp[2 * p + 1]);
    }
  }
}

}  // namespace
}  // namespace npq
