// AVX2 GEMV (M = 1) without VNNI, full range, on the layout of qu8-gemm-6x16c2-avx2.cc
// (avx2-c2.h: int8 weights in K pairs, sign-extended in the loop; why it is exact). The
// dispatcher runs it for M = 1, where the 6-row tile would spend its loop on one row.
//
// One row, three panels (48 columns) per K pair: one vpbroadcastd serves 6 x
// (vpmovsxbw, vpmaddwd, vpaddd), and three weight streams are in flight instead of one.
// Weights are one byte per MAC, each read once per call. Rows of up to kWholeK values
// are prepared once per call; longer rows in kChunk pieces per group of panels.
//
// Registers (16 ymm): 3 panels x 2 accumulators, the broadcast, weights and products.
#include "avx2-c2.h"

namespace npq {
namespace {

constexpr size_t kNR = kC2NR, kNV = kC2NV;
constexpr size_t kWholeK = 8192, kChunk = 1024;  // int16 values of the prepared row

struct Requant {
  const RequantEpilogue* ep;
  uint8_t* c;

  NPQ_INLINE void store(size_t n0, size_t nn, const __m256i (&acc)[1][kNV]) const {
    requant_store_ymm<1, kNV>(ep, c, 0, n0, nn, acc);
  }
};

struct Dequant {
  const DequantEpilogue* ep;
  float* c;

  NPQ_INLINE void store(size_t n0, size_t nn, const __m256i (&acc)[1][kNV]) const {
    dequant_store_ymm<1, kNV>(ep, c, 0, n0, nn, acc);
  }
};

// P panels (P * 16 columns from n0) of the row over kp; buf holds the prepared row
// (all of kp when whole, else refilled per kChunk).
template <size_t P, class Out>
NPQ_INLINE void panels(size_t n0, size_t nc, size_t kp, bool whole, const uint8_t* a,
                       const uint8_t* panel, size_t panel_stride, int16_t* buf, __m256i neg_zp,
                       const Out& out) {
  __m256i acc[P][kNV];
#pragma GCC unroll 16
  for (size_t p = 0; p < P; ++p)
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v)
      acc[p][v] = _mm256_mullo_epi32(
          _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + p * panel_stride) + v),
          neg_zp);
  const int8_t* w0 = reinterpret_cast<const int8_t*>(panel + kNR * sizeof(int32_t));
  const size_t chunk = whole ? kp : kChunk;
  for (size_t k0 = 0; k0 < kp; k0 += chunk) {
    const size_t len = kp - k0 < chunk ? kp - k0 : chunk;
    if (!whole) c2_widen_run(a + k0, len, buf);
    const int8_t* wk = w0 + k0 * kNR;
    for (size_t k = 0; k < len; k += 2, wk += 2 * kNR) {
      const __m256i av = c2_pair(buf, k);
#pragma GCC unroll 16
      for (size_t p = 0; p < P; ++p)
#pragma GCC unroll 16
        for (size_t v = 0; v < kNV; ++v)
          c2_madd(acc[p][v], av, c2_load_w(wk + p * panel_stride + v * 16));
    }
  }
  for (size_t p = 0; p < P; ++p) {
    const size_t np0 = n0 + p * kNR;
    if (np0 >= nc) break;
    const __m256i c[1][kNV] = {{acc[p][0], acc[p][1]}};
    out.store(np0, nc - np0 < kNR ? nc - np0 : kNR, c);
  }
}

template <class Out>
__attribute__((noinline)) void gemv(size_t nc, size_t kp, const uint8_t* a, const void* w,
                                    int32_t a_zp, const Out& out) {
  const size_t panel_stride = kNR * sizeof(int32_t) + kp * kNR;
  const uint8_t* panel = static_cast<const uint8_t*>(w);
  alignas(32) int16_t buf[kWholeK];
  const bool whole = kp <= kWholeK;
  if (whole) c2_widen_run(a, kp, buf);
  const __m256i neg_zp = _mm256_set1_epi32(-a_zp);
  size_t n0 = 0;
  for (; n0 + 2 * kNR < nc; n0 += 3 * kNR, panel += 3 * panel_stride)
    panels<3>(n0, nc, kp, whole, a, panel, panel_stride, buf, neg_zp, out);
  if (n0 + kNR < nc)
    panels<2>(n0, nc, kp, whole, a, panel, panel_stride, buf, neg_zp, out);
  else if (n0 < nc)
    panels<1>(n0, nc, kp, whole, a, panel, panel_stride, buf, neg_zp, out);
}

}  // namespace

// mr is 1 (the registry's MR); a_stride and c_stride are unused for one row.
void qu8_gemm_1x16c2__avx2_requant(size_t, size_t nc, size_t kp, const uint8_t* a, size_t,
                                   const void* w, const int32_t* a_zp, uint8_t* c, size_t,
                                   const RequantEpilogue* ep) {
  gemv(nc, kp, a, w, a_zp[0], Requant{ep, c});
}

void qu8_gemm_1x16c2__avx2_dequant(size_t, size_t nc, size_t kp, const uint8_t* a, size_t,
                                   const void* w, const int32_t* a_zp, float* c, size_t,
                                   const DequantEpilogue* ep) {
  gemv(nc, kp, a, w, a_zp[0], Dequant{ep, c});
}

}  // namespace npq
