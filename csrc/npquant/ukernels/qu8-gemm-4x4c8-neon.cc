// Plain ARMv8 (Advanced SIMD) 4x4c8 GEMM. Layout: PackedLayout{nr=4, kr=8, k_align=8}.
//
// ARMv8 has no u8 x s8 multiply, so activations are shifted to s8
// (a' = a ^ 0x80 = a - 128) and the shift is undone with the column sums:
//   sum_k a*w = sum_k a'*w + 128*colsum,  so  acc = sum_k a'*w + (128 - a_zp)*colsum.
// Exactness for every u8 activation and every s8 weight, -128 included:
//   SMULL: s8*s8 products lie in [-16256, 16384] and are exact in int16;
//   SADALP adds adjacent int16 pairs *widened* to int32, so no int16 sum ever
//   forms (SMULL+SMLAL into int16, as in kernels that ban -128 weights, would
//   overflow on two (-128)*(-128) products);
//   an int32 lane holds at most K/4 * 2 * 16384 <= 2^30 for K <= kMaxK.
// The correction term wraps like the reference's int32 result (exact modulo 2^32).
//
// One 8-byte load of packed weights is one column x 8 k; per row and column,
// one SMULL (8 products) and one SADALP; the 4 lanes are summed at the end.
// (8-byte operands rather than 16: with 16 the compiler's scheduling keeps
// more products live than the 32 registers hold and spills accumulators.)
#include <arm_neon.h>

#include "../ukernel.h"
#include "neon-epilogue.h"

namespace npq {
namespace {

constexpr size_t kMR = 4, kNR = 4, kKR = 8;

// acc[r] = the 4 columns of one panel for row r (R rows, R <= kMR).
template <size_t R>
void panel_acc(size_t kp, const uint8_t* a, size_t a_stride, const int8_t* panel,
               const int32_t* a_zp, int32x4_t acc[R]) {
  const int32x4_t colsum = vld1q_s32(reinterpret_cast<const int32_t*>(panel));
  const int8_t* w = panel + kNR * sizeof(int32_t);
  const uint8x8_t flip = vdup_n_u8(0x80);
  // s[r][j]: four partial sums of row r against column j (reduced below).
  int32x4_t s[R][kNR];
  for (size_t r = 0; r < R; ++r)
    for (size_t j = 0; j < kNR; ++j) s[r][j] = vdupq_n_s32(0);
  for (size_t k = 0; k < kp; k += kKR, w += kNR * kKR) {
    int8x8_t wv[kNR];
    for (size_t j = 0; j < kNR; ++j) wv[j] = vld1_s8(w + j * kKR);
    int8x8_t av[R];
    for (size_t r = 0; r < R; ++r)
      av[r] = vreinterpret_s8_u8(veor_u8(vld1_u8(a + r * a_stride + k), flip));
    for (size_t j = 0; j < kNR; ++j)
      for (size_t r = 0; r < R; ++r) s[r][j] = vpadalq_s16(s[r][j], vmull_s8(av[r], wv[j]));
  }
  for (size_t r = 0; r < R; ++r) {
    const int32x4_t sums = vpaddq_s32(vpaddq_s32(s[r][0], s[r][1]), vpaddq_s32(s[r][2], s[r][3]));
    acc[r] = vmlaq_n_s32(sums, colsum, 128 - a_zp[r]);
  }
}

// Walks ceil(nc/NR) panels for R rows; store(r, n0, nn, acc) writes one row's columns.
template <size_t R, class Store>
void run(size_t nc, size_t kp, const uint8_t* a, size_t a_stride, const void* w,
         const int32_t* a_zp, const Store& store) {
  const int8_t* panel = static_cast<const int8_t*>(w);
  const size_t panel_stride = kNR * sizeof(int32_t) + kp * kNR;
  for (size_t n0 = 0; n0 < nc; n0 += kNR, panel += panel_stride) {
    int32x4_t acc[R];
    panel_acc<R>(kp, a, a_stride, panel, a_zp, acc);
    const size_t nn = nc - n0 < kNR ? nc - n0 : kNR;
    for (size_t r = 0; r < R; ++r) store(r, n0, nn, &acc[r]);
  }
}

// Instantiates run<> for the actual row count, so a short tile does no wasted work.
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

void qu8_gemm_4x4c8__neon_requant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                  size_t a_stride, const void* w, const int32_t* a_zp, uint8_t* c,
                                  size_t c_stride, const RequantEpilogue* ep) {
  run_rows(mr, nc, kp, a, a_stride, w, a_zp,
           [&](size_t r, size_t n0, size_t nn, const int32x4_t* acc) {
             requant_row<kNR / 4>(acc, ep, n0, c + r * c_stride + n0, nn);
           });
}

void qu8_gemm_4x4c8__neon_dequant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                  size_t a_stride, const void* w, const int32_t* a_zp, float* c,
                                  size_t c_stride, const DequantEpilogue* ep) {
  run_rows(mr, nc, kp, a, a_stride, w, a_zp,
           [&](size_t r, size_t n0, size_t nn, const int32x4_t* acc) {
             dequant_row<kNR / 4>(acc, ep, r, n0, row_ptr(c, r, c_stride) + n0, nn);
           });
}

}  // namespace npq
