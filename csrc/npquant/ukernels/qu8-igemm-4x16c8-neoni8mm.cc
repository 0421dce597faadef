// ARMv8.6 I8MM indirect GEMM for convolution: 4 rows x 16 columns per panel,
// USMMLA. Layout: PackedLayout{nr=16, kr=8, k_align=8} (the neoni8mm GEMM's),
// K = ks*kc tap-major; kc is a multiple of 8.
//
// The inner loop is qu8-gemm-4x16c8-neoni8mm.cc's, with A read through the
// indirection table: per tap, each row's kc bytes come from a_base + a[s*MR + r]
// (or the zero-point row for padding, which contributes a_zp*w - a_zp*w = 0).
// USMMLA multiplies u8 by s8 directly: acc = sum_k a*w - a_zp*colsum, exact
// (8 products of at most 255*128 per lane and step, |sum| < 2^31 for K <= kMaxK).
// The left operand, rows (2p, 2p+1) x 8 k, is ZIP1/ZIP2 of two rows' loads; an
// odd row count repeats its last row in the final pair and drops the copy.
#include <arm_neon.h>

#include "../ukernel.h"
#include "neon-epilogue.h"

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

// acc[r][j] = columns 4j..4j+3 of one panel for row r (R rows, R <= kMR).
template <size_t R>
void panel_acc(size_t kc, size_t ks, const size_t* a, const uint8_t* a_base, size_t pad,
               const uint8_t* zero, const int8_t* panel, int32_t a_zp,
               int32x4_t (*acc)[kNR / 4]) {
  constexpr size_t P = (R + 1) / 2;
  const int32_t* colsum = reinterpret_cast<const int32_t*>(panel);
  const int8_t* w = panel + kNR * sizeof(int32_t);
  int32x4_t s[P][kNR / 2];
  for (size_t p = 0; p < P; ++p)
    for (size_t q = 0; q < kNR / 2; ++q) s[p][q] = vdupq_n_s32(0);
  for (size_t tap = 0; tap < ks; ++tap, a += kMR) {
    const uint8_t* rows[2 * P];
    for (size_t r = 0; r < 2 * P; ++r) {
      const size_t e = a[r < R ? r : R - 1];
      rows[r] = e == pad ? zero : a_base + e;
    }
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
      for (size_t p = 0; p < P; ++p) ap[p] = vcombine_u8(vld1_u8(rows[2 * p] + k),
                                                         vld1_u8(rows[2 * p + 1] + k));
      mmla_group<P>(w, ap, s);
      w += kGroupBytes;
    }
  }
  // The 2x2 blocks (r0c0, r0c1, r1c0, r1c1) back into rows.
  for (size_t p = 0; p < P; ++p) {
    for (size_t j = 0; j < kNR / 4; ++j) {
      const int64x2_t b0 = vreinterpretq_s64_s32(s[p][2 * j]);
      const int64x2_t b1 = vreinterpretq_s64_s32(s[p][2 * j + 1]);
      const int32x4_t cs = vld1q_s32(colsum + 4 * j);
      acc[2 * p][j] = vmlsq_n_s32(vreinterpretq_s32_s64(vzip1q_s64(b0, b1)), cs, a_zp);
      if (2 * p + 1 < R)
        acc[2 * p + 1][j] = vmlsq_n_s32(vreinterpretq_s32_s64(vzip2q_s64(b0, b1)), cs, a_zp);
    }
  }
}

// Walks ceil(nc/NR) panels for R rows (the rows the caller stores).
template <size_t R>
void run(size_t nc, size_t kc, size_t ks, const size_t* a, const uint8_t* a_base, size_t pad,
         const uint8_t* zero, const void* w, int32_t a_zp, uint8_t* c, size_t c_stride,
         const RequantEpilogue* ep) {
  const int8_t* panel = static_cast<const int8_t*>(w);
  const size_t panel_stride = kNR * sizeof(int32_t) + ks * kc * kNR;
  for (size_t n0 = 0; n0 < nc; n0 += kNR, panel += panel_stride) {
    int32x4_t acc[R][kNR / 4];
    panel_acc<R>(kc, ks, a, a_base, pad, zero, panel, a_zp, acc);
    const size_t nn = nc - n0 < kNR ? nc - n0 : kNR;
    const RequantConsts<kNR / 4> k = requant_consts<kNR / 4>(ep, n0);
    for (size_t r = 0; r < R; ++r) requant_store<kNR / 4>(acc[r], k, c + r * c_stride + n0, nn);
  }
}

}  // namespace

void qu8_igemm_4x16c8__neoni8mm_requant(size_t mr, size_t nc, size_t kc, size_t ks,
                                        const size_t* a, const uint8_t* a_base, size_t pad,
                                        const uint8_t* zero, const void* w, int32_t a_zp,
                                        uint8_t* c, size_t c_stride, const RequantEpilogue* ep) {
  // Only the mr rows that are stored are computed (an odd count wastes half a row pair).
  switch (mr) {
    case 1: return run<1>(nc, kc, ks, a, a_base, pad, zero, w, a_zp, c, c_stride, ep);
    case 2: return run<2>(nc, kc, ks, a, a_base, pad, zero, w, a_zp, c, c_stride, ep);
    case 3: return run<3>(nc, kc, ks, a, a_base, pad, zero, w, a_zp, c, c_stride, ep);
    default: return run<kMR>(nc, kc, ks, a, a_base, pad, zero, w, a_zp, c, c_stride, ep);
  }
}

}  // namespace npq
