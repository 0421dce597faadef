// ARMv8.6 I8MM 4x16c8 GEMM (USMMLA). Layout: PackedLayout{nr=16, kr=8, k_align=8}.
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
// (r0c0, r0c1, r1c0, r1c1) are turned back into rows with the same zips.
#include <arm_neon.h>

#include "../ukernel.h"
#include "neon-epilogue.h"

namespace npq {
namespace {

constexpr size_t kMR = 4, kNR = 16, kKR = 8;
constexpr size_t kGroupBytes = kNR * kKR;  // one k-group of a panel: 128 bytes

// Rows (2p, 2p+1) of an 8-k group, k from a0[k] and a1[k].
uint8x16_t row_pair8(const uint8_t* a0, const uint8_t* a1) {
  return vcombine_u8(vld1_u8(a0), vld1_u8(a1));
}

// s[p][q] += rows (2p, 2p+1) x columns (2q, 2q+1) for one 8-k group at w.
template <size_t P>
void mmla_group(const int8_t* w, const uint8x16_t* ap, int32x4_t (*s)[kNR / 2]) {
  for (size_t q = 0; q < kNR / 2; ++q) {
    const int8x16_t wv = vld1q_s8(w + 16 * q);
    for (size_t p = 0; p < P; ++p) s[p][q] = vusmmlaq_s32(s[p][q], ap[p], wv);
  }
}

// acc[r][j] = columns 4j..4j+3 of one panel for row r (R rows, R <= kMR).
// An odd R computes its last row pair with the last row twice (never reading
// a row beyond R) and drops the copy.
template <size_t R>
void panel_acc(size_t kp, const uint8_t* a, size_t a_stride, const int8_t* panel,
               const int32_t* a_zp, int32x4_t (*acc)[kNR / 4]) {
  constexpr size_t P = (R + 1) / 2;
  const int32_t* colsum = reinterpret_cast<const int32_t*>(panel);
  const int8_t* w = panel + kNR * sizeof(int32_t);
  const uint8_t* rows[2 * P];
  for (size_t r = 0; r < 2 * P; ++r) rows[r] = a + (r < R ? r : R - 1) * a_stride;
  int32x4_t s[P][kNR / 2];
  for (size_t p = 0; p < P; ++p)
    for (size_t q = 0; q < kNR / 2; ++q) s[p][q] = vdupq_n_s32(0);
  size_t k = 0;
  for (; k + 16 <= kp; k += 16, w += 2 * kGroupBytes) {
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
  if (k < kp) {  // one remaining 8-k group
    uint8x16_t ap[P];
    for (size_t p = 0; p < P; ++p) ap[p] = row_pair8(rows[2 * p] + k, rows[2 * p + 1] + k);
    mmla_group<P>(w, ap, s);
  }
  for (size_t p = 0; p < P; ++p) {
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

// Walks ceil(nc/NR) panels for R rows; store(r, n0, nn, acc) writes one row's columns.
template <size_t R, class Store>
void run(size_t nc, size_t kp, const uint8_t* a, size_t a_stride, const void* w,
         const int32_t* a_zp, const Store& store) {
  const int8_t* panel = static_cast<const int8_t*>(w);
  const size_t panel_stride = kNR * sizeof(int32_t) + kp * kNR;
  for (size_t n0 = 0; n0 < nc; n0 += kNR, panel += panel_stride) {
    int32x4_t acc[R][kNR / 4];
    panel_acc<R>(kp, a, a_stride, panel, a_zp, acc);
    const size_t nn = nc - n0 < kNR ? nc - n0 : kNR;
    for (size_t r = 0; r < R; ++r) store(r, n0, nn, acc[r]);
  }
}

// Instantiates run<> for the actual row count (an odd count wastes half a row pair).
template <class Store>
void run_rows(size_t mr, size_t nc, size_t kp, const uint8_t* a, size_t a_stride,
              const void* w, const int32_t* a_zp, const Store& store) {
  switch (mr) {
    case 1: return run<1>(nc, kp, a, a_stride, w, a_zp, store);
    case 2: return run<2>(nc, kp, a, a_stride, w, a_zp, store);
    case 3: return run<3>(nc, kp, a, a_stride, w, a_zp, store);
    default: return run<kMR>(nc, kp, a, a_stride, w, a_zp, store);
  }
}

}  // namespace

void qu8_gemm_4x16c8__neoni8mm_requant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                       size_t a_stride, const void* w, const int32_t* a_zp,
                                       uint8_t* c, size_t c_stride, const RequantEpilogue* ep) {
  run_rows(mr, nc, kp, a, a_stride, w, a_zp,
           [&](size_t r, size_t n0, size_t nn, const int32x4_t* acc) {
             requant_row<kNR / 4>(acc, ep, n0, c + r * c_stride + n0, nn);
           });
}

void qu8_gemm_4x16c8__neoni8mm_dequant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                       size_t a_stride, const void* w, const int32_t* a_zp,
                                       float* c, size_t c_stride, const DequantEpilogue* ep) {
  run_rows(mr, nc, kp, a, a_stride, w, a_zp,
           [&](size_t r, size_t n0, size_t nn, const int32x4_t* acc) {
             dequant_row<kNR / 4>(acc, ep, r, n0, row_ptr(c, r, c_stride) + n0, nn);
           });
}

}  // namespace npq
