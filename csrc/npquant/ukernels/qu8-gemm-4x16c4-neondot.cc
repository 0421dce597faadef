// ARMv8.2 dot-product 4x16c4 GEMM (SDOT by lane). Layout: PackedLayout{nr=16, kr=4, k_align=4}.
//
// SDOT and UDOT multiply operands of the same signedness; u8 x s8 (USDOT)
// needs I8MM. So activations are shifted to s8, a' = a ^ 0x80 = a - 128, and
//   acc = sum_k a'*w + (128 - a_zp)*colsum.
// Exact for every u8 activation and s8 weight (-128 included): each SDOT lane
// adds four s8*s8 products (each in [-16256, 16384]) into int32, and a lane
// holds at most K*16384 <= 2^30 for K <= kMaxK. The correction wraps like the
// reference's int32 result (exact modulo 2^32).
//
// One 16-byte load of packed weights holds 4 columns x 4 k; SDOT by lane g
// multiplies it with k-group g of a row's 8 loaded activations.
#include <arm_neon.h>

#include <cstring>

#include "../ukernel.h"
#include "neon-epilogue.h"

namespace npq {
namespace {

constexpr size_t kMR = 4, kNR = 16, kKR = 4;
constexpr size_t kGroupBytes = kNR * kKR;  // one k-group of a panel: 64 bytes

// s[r][j] += columns 4j..4j+3 of k-group G (at w) times lane G of av[r].
template <size_t R, int G>
void dot_group(const int8_t* w, const int8x8_t* av, int32x4_t (*s)[kNR / 4]) {
  int8x16_t wv[kNR / 4];
  for (size_t j = 0; j < kNR / 4; ++j) wv[j] = vld1q_s8(w + 16 * j);
  for (size_t r = 0; r < R; ++r)
    for (size_t j = 0; j < kNR / 4; ++j) s[r][j] = vdotq_lane_s32(s[r][j], wv[j], av[r], G);
}

// acc[r][j] = columns 4j..4j+3 of one panel for row r (R rows, R <= kMR).
// The main loop takes 8 k (two groups) per step: 16 accumulators, 4 rows and
// 8 weight vectors fit the 32 registers; 16 k per step would make the
// compiler hoist 16 weight vectors and spill accumulators.
template <size_t R>
void panel_acc(size_t kp, const uint8_t* a, size_t a_stride, const int8_t* panel,
               const int32_t* a_zp, int32x4_t (*acc)[kNR / 4]) {
  const int32_t* colsum = reinterpret_cast<const int32_t*>(panel);
  const int8_t* w = panel + kNR * sizeof(int32_t);
  const uint8x8_t flip = vdup_n_u8(0x80);
  int32x4_t s[R][kNR / 4];
  for (size_t r = 0; r < R; ++r)
    for (size_t j = 0; j < kNR / 4; ++j) s[r][j] = vdupq_n_s32(0);
  size_t k = 0;
  for (; k + 8 <= kp; k += 8, w += 2 * kGroupBytes) {
    int8x8_t av[R];
    for (size_t r = 0; r < R; ++r)
      av[r] = vreinterpret_s8_u8(veor_u8(vld1_u8(a + r * a_stride + k), flip));
    dot_group<R, 0>(w, av, s);
    dot_group<R, 1>(w + kGroupBytes, av, s);
  }
  if (k < kp) {  // one remaining k-group: 4 bytes per row (never reads past kp)
    int8x8_t av[R];
    for (size_t r = 0; r < R; ++r) {
      uint32_t bytes;
      std::memcpy(&bytes, a + r * a_stride + k, sizeof(bytes));
      av[r] = vreinterpret_s8_u8(veor_u8(vreinterpret_u8_u32(vdup_n_u32(bytes)), flip));
    }
    dot_group<R, 0>(w, av, s);
  }
  for (size_t r = 0; r < R; ++r)
    for (size_t j = 0; j < kNR / 4; ++j)
      acc[r][j] = vmlaq_n_s32(s[r][j], vld1q_s32(colsum + 4 * j), 128 - a_zp[r]);
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

// Instantiates run<> for the actual row count, so a short tile does no wasted work.
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

void qu8_gemm_4x16c4__neondot_requant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                      size_t a_stride, const void* w, const int32_t* a_zp,
                                      uint8_t* c, size_t c_stride, const RequantEpilogue* ep) {
  run_rows(mr, nc, kp, a, a_stride, w, a_zp,
           [&](size_t r, size_t n0, size_t nn, const int32x4_t* acc) {
             requant_row<kNR / 4>(acc, ep, n0, c + r * c_stride + n0, nn);
           });
}

void qu8_gemm_4x16c4__neondot_dequant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                      size_t a_stride, const void* w, const int32_t* a_zp,
                                      float* c, size_t c_stride, const DequantEpilogue* ep) {
  run_rows(mr, nc, kp, a, a_stride, w, a_zp,
           [&](size_t r, size_t n0, size_t nn, const int32x4_t* acc) {
             dequant_row<kNR / 4>(acc, ep, r, n0, row_ptr(c, r, c_stride) + n0, nn);
           });
}

}  // namespace npq
