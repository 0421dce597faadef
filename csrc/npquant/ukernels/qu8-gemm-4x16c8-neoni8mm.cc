// ARMv8.6 I8MM 4x16c8 GEMM (USMMLA). Layout: PackedLayout{nr=16, kr=8, k_align=8}.
//
// The tile's K accumulation (USMMLA on zipped row pairs, u8 x s8 with no shift,
// why it is exact) is neoni8mm-mmla.h's, shared with the indirect GEMM; here
// rows r of A are a + r*a_stride and K = kp.
#include <arm_neon.h>

#include "../ukernel.h"
#include "neon-epilogue.h"
#include "neoni8mm-mmla.h"

namespace npq {
namespace {

// acc[r][j] = columns 4j..4j+3 of one panel for row r (R rows, R <= kMR).
// Flattened: with the shared routines inlined here the 2x2 blocks stay in
// registers; left to its heuristics GCC called some row counts' mmla_rows out
// of line, with the blocks in memory.
// An odd R passes its last row twice as the last row pair.
template <size_t R>
[[gnu::flatten]] void panel_acc(size_t kp, const uint8_t* a, size_t a_stride, const int8_t* panel,
                                const int32_t* a_zp, int32x4_t (*acc)[kNR / 4]) {
  constexpr size_t P = kPairs<R>;
  const uint8_t* rows[2 * P];
  for (size_t r = 0; r < 2 * P; ++r) rows[r] = a + (r < R ? r : R - 1) * a_stride;
  int32x4_t s[P][kNR / 2];
  zero_blocks<R>(s);
  mmla_rows<R>(kp, rows, panel + kNR * sizeof(int32_t), s);
  blocks_to_rows<R>(s, reinterpret_cast<const int32_t*>(panel), a_zp, acc);
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
void run_rows(size_t mr, size_t nc, size_t kp, const uint8_t* a, size_t a_stride, const void* w,
              const int32_t* a_zp, const Store& store) {
  switch (mr) {
    case 1:
      return run<1>(nc, kp, a, a_stride, w, a_zp, store);
    case 2:
      return run<2>(nc, kp, a, a_stride, w, a_zp, store);
    case 3:
      return run<3>(nc, kp, a, a_stride, w, a_zp, store);
    default:
      return run<kMR>(nc, kp, a, a_stride, w, a_zp, store);
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
