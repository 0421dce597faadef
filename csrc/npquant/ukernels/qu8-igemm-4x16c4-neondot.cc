// ARMv8.2 dot-product indirect GEMM for convolution: 4 rows x 16 columns per
// panel, SDOT by lane. Layout: PackedLayout{nr=16, kr=4, k_align=4} (the neondot
// GEMM's), K = ks*kc tap-major; kc is a multiple of 4.
//
// The inner loop is qu8-gemm-4x16c4-neondot.cc's, with A read through the
// indirection table: per tap, each row's kc bytes come from a_base + a[s*MR + r]
// (or the zero-point row for padding). Activations are shifted to s8
// (a' = a ^ 0x80 = a - 128) for SDOT, and the shift is undone with the column
// sums: acc = sum_k a'*w + (128 - a_zp)*colsum. Padding rows hold a_zp, so they
// contribute (a_zp - 128)*w + 128*w - a_zp*w = 0, exactly. Exact for every u8
// activation and s8 weight: each SDOT lane adds four s8 x s8 products into int32
// (|lane| <= K*16384 <= 2^30 for K <= kMaxK); the correction wraps like the
// reference's int32 result.
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
// 8 k per step as in the GEMM (16 accumulators, 4 rows, 8 weight vectors).
template <size_t R>
void panel_acc(size_t kc, size_t ks, const size_t* a, const uint8_t* a_base, size_t pad,
               const uint8_t* zero, const int8_t* panel, int32_t a_zp,
               int32x4_t (*acc)[kNR / 4]) {
  const int32_t* colsum = reinterpret_cast<const int32_t*>(panel);
  const int8_t* w = panel + kNR * sizeof(int32_t);
  const uint8x8_t flip = vdup_n_u8(0x80);
  int32x4_t s[R][kNR / 4];
  for (size_t r = 0; r < R; ++r)
    for (size_t j = 0; j < kNR / 4; ++j) s[r][j] = vdupq_n_s32(0);
  for (size_t tap = 0; tap < ks; ++tap, a += kMR) {
    const uint8_t* ar[R];
    for (size_t r = 0; r < R; ++r) ar[r] = a[r] == pad ? zero : a_base + a[r];
    size_t k = 0;
    for (; k + 8 <= kc; k += 8, w += 2 * kGroupBytes) {
      int8x8_t av[R];
      for (size_t r = 0; r < R; ++r) av[r] = vreinterpret_s8_u8(veor_u8(vld1_u8(ar[r] + k), flip));
      dot_group<R, 0>(w, av, s);
      dot_group<R, 1>(w + kGroupBytes, av, s);
    }
    if (k < kc) {  // one remaining k-group: 4 bytes per row (never reads past kc)
      int8x8_t av[R];
      for (size_t r = 0; r < R; ++r) {
        uint32_t bytes;
        std::memcpy(&bytes, ar[r] + k, sizeof(bytes));
        av[r] = vreinterpret_s8_u8(veor_u8(vreinterpret_u8_u32(vdup_n_u32(bytes)), flip));
      }
      dot_group<R, 0>(w, av, s);
      w += kGroupBytes;
    }
  }
  for (size_t r = 0; r < R; ++r)
    for (size_t j = 0; j < kNR / 4; ++j)
      acc[r][j] = vmlaq_n_s32(s[r][j], vld1q_s32(colsum + 4 * j), 128 - a_zp);
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

void qu8_igemm_4x16c4__neondot_requant(size_t mr, size_t nc, size_t kc, size_t ks,
                                       const size_t* a, const uint8_t* a_base, size_t pad,
                                       const uint8_t* zero, const void* w, int32_t a_zp,
                                       uint8_t* c, size_t c_stride, const RequantEpilogue* ep) {
  // Only the mr rows that are stored are computed (their entries come first).
  switch (mr) {
    case 1: return run<1>(nc, kc, ks, a, a_base, pad, zero, w, a_zp, c, c_stride, ep);
    case 2: return run<2>(nc, kc, ks, a, a_base, pad, zero, w, a_zp, c, c_stride, ep);
    case 3: return run<3>(nc, kc, ks, a, a_base, pad, zero, w, a_zp, c, c_stride, ep);
    default: return run<kMR>(nc, kc, ks, a, a_base, pad, zero, w, a_zp, c, c_stride, ep);
  }
}

}  // namespace npq
