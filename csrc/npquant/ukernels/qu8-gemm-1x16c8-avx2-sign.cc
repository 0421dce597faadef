// AVX2 GEMV (M = 1) without VNNI by the sign trick, on the layout of
// qu8-gemm-3x16c8-avx2-sign.cc (PackedLayout{nr=16, kr=8, k_align=8, w16=0,
// w127=1}; the arithmetic, the -128 fix table and the zero-point term are the
// 4x16c4 kernel's, see its header). The dispatcher runs it for M = 1, where a
// GEMM tile would spend its spare accumulators on rows that do not exist.
//
// One row, three panels (48 columns) per K step: per K group of 8, one
// vpbroadcastq of the masks m and one of |s| serve 12 weight vectors
// (60 ALU ops, weights as memory operands of vpxor), against 4 with one panel,
// and three weight streams are in flight instead of one. The weights are one
// byte per MAC and each is read once per call: at M = 1 this kernel streams
// the packed panels at the rate the caches give (bench/RESULTS.md compares it
// with a read-bandwidth probe).
//
// Registers (16 ymm): 3 panels x 4 accumulators + m + |s| + one product + the
// int16 ones. Columns past the last group of three run 2 or 1 panels at a time.
#include "avx2-sign-c8.h"

namespace npq {
namespace {

constexpr size_t kNR = kC8NR, kKR = kC8KR, kNV = kC8NV;
constexpr size_t kWholeK = kC8WholeK, kKC = kC8KC, kPitch = kC8Pitch;

struct Requant {
  const RequantEpilogue* ep;
  uint8_t* c;

  NPQ_INLINE void store(size_t n0, size_t nn, const __m256i (&acc)[1][2]) const {
    requant_store_ymm<1, 2>(ep, c, 0, n0, nn, acc);
  }
};

struct Dequant {
  const DequantEpilogue* ep;
  float* c;

  NPQ_INLINE void store(size_t n0, size_t nn, const __m256i (&acc)[1][2]) const {
    dequant_store_ymm<1, 2>(ep, c, 0, n0, nn, acc);
  }
};

// P panels (P * 16 columns from n0) of one row over kp; buf holds the row's
// prepared activations (all of kp when whole, else refilled per kKC chunk).
template <size_t P, class Out>
NPQ_INLINE void panels(size_t n0, size_t nc, size_t kp, bool whole, const uint8_t* a,
                       const uint8_t* panel, size_t panel_stride, uint8_t* buf, __m256i shift,
                       const Out& out) {
  const size_t w_bytes = kp * kNR;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[P][kNV];
#pragma GCC unroll 16
  for (size_t p = 0; p < P; ++p)
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v) acc[p][v] = _mm256_setzero_si256();
  const int8_t* w0 = reinterpret_cast<const int8_t*>(panel + kNR * sizeof(int32_t));
  const size_t chunk = whole ? kp : kKC;
  for (size_t k0 = 0; k0 < kp; k0 += chunk) {
    const size_t kc = kp - k0 < chunk ? kp - k0 : chunk;
    if (!whole) c8_prepare_run(a + k0, kc, buf);
    const int8_t* wk = w0 + k0 * kNR;
    for (size_t k = 0; k < kc; k += kKR) {
      int64_t m8, u8;
      std::memcpy(&m8, buf + 2 * k, 8);
      std::memcpy(&u8, buf + 2 * k + 8, 8);
      const __m256i m = _mm256_set1_epi64x(m8), u = _mm256_set1_epi64x(u8);
#pragma GCC unroll 16
      for (size_t p = 0; p < P; ++p)
#pragma GCC unroll 16
        for (size_t v = 0; v < kNV; ++v)
          sign_dot_mem(acc[p][v], m, u, wk + p * panel_stride + k * kNR + 32 * v, ones);
    }
  }
  __m256i sums[P][2];
  fold_c8<P>(acc, sums);
  for (size_t p = 0; p < P; ++p) {
    const uint8_t* pp = panel + p * panel_stride;
    const size_t np0 = n0 + p * kNR;
    if (np0 >= nc) break;
    __m256i c[1][2] = {{sums[p][0], sums[p][1]}};
    for (size_t v = 0; v < 2; ++v) {
      const __m256i colsum = _mm256_load_si256(reinterpret_cast<const __m256i*>(pp) + v);
      c[0][v] = _mm256_add_epi32(c[0][v], _mm256_mullo_epi32(shift, colsum));
    }
    // Weights that were -128 ran as -127: subtract s_k = a_k - 128 once more.
    const uint32_t* fix = reinterpret_cast<const uint32_t*>(pp + kNR * sizeof(int32_t) + w_bytes);
    if (fix[0] != 0) {
      // One-hot column masks and broadcast s_k, all in registers (as 3x16c8).
      const __m256i idx0 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
      const __m256i idx1 = _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15);
      for (uint32_t i = 1; i <= fix[0]; ++i) {
        const __m256i col = _mm256_set1_epi32(static_cast<int>(fix[i] & 0xFF));
        const __m256i sk = _mm256_set1_epi32(static_cast<int>(a[fix[i] >> 8]) - 128);
        c[0][0] = _mm256_sub_epi32(c[0][0], _mm256_and_si256(sk, _mm256_cmpeq_epi32(idx0, col)));
        c[0][1] = _mm256_sub_epi32(c[0][1], _mm256_and_si256(sk, _mm256_cmpeq_epi32(idx1, col)));
      }
    }
    out.store(np0, nc - np0 < kNR ? nc - np0 : kNR, c);
  }
}

template <class Out>
__attribute__((noinline)) void gemv(size_t nc, size_t kp, const uint8_t* a, const void* w,
                                    int32_t a_zp, const Out& out) {
  const size_t panel_stride = kNR * sizeof(int32_t) + kp * kNR + kW127FixWords * sizeof(uint32_t);
  const uint8_t* panel = static_cast<const uint8_t*>(w);
  alignas(32) uint8_t buf[kPitch];
  const bool whole = kp <= kWholeK;
  if (whole) c8_prepare_run(a, kp, buf);
  // (128 - zp): the +128 of s = a - 128 and the zero point, one term.
  const __m256i shift = _mm256_set1_epi32(128 - a_zp);
  size_t n0 = 0;
  for (; n0 + 2 * kNR < nc; n0 += 3 * kNR, panel += 3 * panel_stride)
    panels<3>(n0, nc, kp, whole, a, panel, panel_stride, buf, shift, out);
  if (n0 + kNR < nc)
    panels<2>(n0, nc, kp, whole, a, panel, panel_stride, buf, shift, out);
  else if (n0 < nc)
    panels<1>(n0, nc, kp, whole, a, panel, panel_stride, buf, shift, out);
}

}  // namespace

// mr is 1 (the registry's MR); a_stride and c_stride are unused for one row.
void qu8_gemm_1x16c8__avx2_sign_requant(size_t, size_t nc, size_t kp, const uint8_t* a, size_t,
                                        const void* w, const int32_t* a_zp, uint8_t* c, size_t,
                                        const RequantEpilogue* ep) {
  gemv(nc, kp, a, w, a_zp[0], Requant{ep, c});
}

void qu8_gemm_1x16c8__avx2_sign_dequant(size_t, size_t nc, size_t kp, const uint8_t* a, size_t,
                                        const void* w, const int32_t* a_zp, float* c, size_t,
                                        const DequantEpilogue* ep) {
  gemv(nc, kp, a, w, a_zp[0], Dequant{ep, c});
}

}  // namespace npq
