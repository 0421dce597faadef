// ARMv8.6 I8MM indirect GEMM for convolution: 4 rows x 16 columns per panel,
// USMMLA. Layout: PackedLayout{nr=16, kr=8, k_align=8} (the neoni8mm GEMM's),
// K = ks*kc tap-major; kc is a multiple of 8.
//
// The K accumulation is the GEMM's (neoni8mm-mmla.h: USMMLA on zipped row
// pairs, u8 x s8 directly, acc = sum_k a*w - a_zp*colsum), run once per tap on
// rows read through the indirection table: each row's kc bytes come from
// a_base + a[s*MR + r], or the zero-point row for padding, which contributes
// a_zp*w - a_zp*w = 0. An odd row count repeats its last row in the final pair
// and drops the copy.
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
template <size_t R>
[[gnu::flatten]] void panel_acc(size_t kc, size_t ks, const size_t* a, const uint8_t* a_base,
                                size_t pad, const uint8_t* zero, const int8_t* panel, int32_t a_zp,
                                int32x4_t (*acc)[kNR / 4]) {
  constexpr size_t P = kPairs<R>;
  const int8_t* w = panel + kNR * sizeof(int32_t);
  int32x4_t s[P][kNR / 2];
  zero_blocks<R>(s);
  for (size_t tap = 0; tap < ks; ++tap, a += kMR) {
    const uint8_t* rows[2 * P];
    for (size_t r = 0; r < 2 * P; ++r) {
      const size_t e = a[r < R ? r : R - 1];
      rows[r] = e == pad ? zero : a_base + e;
    }
    w = mmla_rows<R>(kc, rows, w, s);
  }
  int32_t zp[R];
  for (size_t r = 0; r < R; ++r) zp[r] = a_zp;
  blocks_to_rows<R>(s, reinterpret_cast<const int32_t*>(panel), zp, acc);
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

void qu8_igemm_4x16c8__neoni8mm_requant(size_t mr, size_t nc, size_t kc, size_t ks, const size_t* a,
                                        const uint8_t* a_base, size_t pad, const uint8_t* zero,
                                        const void* w, int32_t a_zp, uint8_t* c, size_t c_stride,
                                        const RequantEpilogue* ep) {
  // Only the mr rows that are stored are computed (an odd count wastes half a row pair).
  switch (mr) {
    case 1:
      return run<1>(nc, kc, ks, a, a_base, pad, zero, w, a_zp, c, c_stride, ep);
    case 2:
      return run<2>(nc, kc, ks, a, a_base, pad, zero, w, a_zp, c, c_stride, ep);
    case 3:
      return run<3>(nc, kc, ks, a, a_base, pad, zero, w, a_zp, c, c_stride, ep);
    default:
      return run<kMR>(nc, kc, ks, a, a_base, pad, zero, w, a_zp, c, c_stride, ep);
  }
}

}  // namespace npq
