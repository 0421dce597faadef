// ARMv8.2 dot-product indirect GEMM for convolution: 4 rows x 16 columns per
// panel, SDOT by lane. Layout: PackedLayout{nr=16, kr=4, k_align=4} (the neondot
// GEMM's), K = ks*kc tap-major; kc is a multiple of 4.
//
// The K accumulation is the GEMM's (neondot-dot.h: s8 shift, SDOT by lane, 8 k
// per step), run once per tap on rows read through the indirection table: each
// row's kc bytes come from a_base + a[s*MR + r], or the zero-point row for
// padding. The shift is undone with the column sums over all taps,
// acc = sum_k a'*w + (128 - a_zp)*colsum, so padding rows (holding a_zp)
// contribute (a_zp - 128)*w + 128*w - a_zp*w = 0, exactly.
#include <arm_neon.h>

#include "../ukernel.h"
#include "neon-epilogue.h"
#include "neondot-dot.h"

namespace npq {
namespace {

// acc[r][j] = columns 4j..4j+3 of one panel for row r (R rows, R <= kMR).
template <size_t R>
void panel_acc(size_t kc, size_t ks, const size_t* a, const uint8_t* a_base, size_t pad,
               const uint8_t* zero, const int8_t* panel, int32_t a_zp, int32x4_t (*acc)[kNR / 4]) {
  const int8_t* w = panel + kNR * sizeof(int32_t);
  int32x4_t s[R][kNR / 4];
  zero_acc<R>(s);
  for (size_t tap = 0; tap < ks; ++tap, a += kMR) {
    const uint8_t* rows[R];
    for (size_t r = 0; r < R; ++r) rows[r] = a[r] == pad ? zero : a_base + a[r];
    w = dot_rows<R>(kc, rows, w, s);
  }
  int32_t zp[R];
  for (size_t r = 0; r < R; ++r) zp[r] = a_zp;
  undo_shift<R>(s, reinterpret_cast<const int32_t*>(panel), zp, acc);
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

void qu8_igemm_4x16c4__neondot_requant(size_t mr, size_t nc, size_t kc, size_t ks, const size_t* a,
                                       const uint8_t* a_base, size_t pad, const uint8_t* zero,
                                       const void* w, int32_t a_zp, uint8_t* c, size_t c_stride,
                                       const RequantEpilogue* ep) {
  // Only the mr rows that are stored are computed (their entries come first).
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
