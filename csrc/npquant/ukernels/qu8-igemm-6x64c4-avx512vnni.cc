// AVX-512 VNNI indirect GEMM for convolution: 6 rows x 64 columns per tile,
// vpdpbusd (u8 x s8, 4 products summed exactly into int32 lanes).
// Layout: PackedLayout{nr=16, kr=4, k_align=4} (the avx512vnni GEMM's), K = ks*kc
// tap-major; a 64-column tile walks 4 consecutive panels.
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized (and, once the epilogue
// is unrolled, -Wuninitialized) on their own `_mm512_undefined_*`
// self-initialization (GCC bug 105593); nothing here is.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstring>

#include "../ukernel.h"
#include "avx512-util.h"

namespace npq {
namespace {

constexpr size_t kMR = 6, kNR = 16;

int32_t load_u32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// acc += dpbusd(a, w). Inline asm, as in the GEMM: with intrinsics GCC 12 copied
// accumulators between registers on every K step of the 1-2 panel tiles (objdump)
// once their epilogue was unrolled.
NPQ_INLINE void dpbusd(__m512i& acc, __m512i a, __m512i w) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(w));
}

// One tile of 16*NP columns (NP panels); `cols` of them are stored.
template <int NP>
void tile(size_t mr, size_t cols, size_t kc, size_t ks, const size_t* a, const uint8_t* a_base,
          size_t pad, const uint8_t* zero, const int8_t* w, size_t panel_stride, int32_t a_zp,
          uint8_t* c, size_t c_stride, const float* bias_s, const float* mult,
          const RequantEpilogue* ep) {
  __m512i acc[kMR][NP];
  const __m512i neg_zp = _mm512_set1_epi32(-a_zp);
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p) {
    const __m512i init = _mm512_mullo_epi32(
        _mm512_load_si512(reinterpret_cast<const __m512i*>(w + p * panel_stride)), neg_zp);
#pragma GCC unroll 6
    for (size_t r = 0; r < kMR; ++r) acc[r][p] = init;
  }
  const int8_t* wk = w + kNR * sizeof(int32_t);
  for (size_t s = 0; s < ks; ++s, a += kMR) {
    const uint8_t* ar[kMR];
#pragma GCC unroll 6
    for (size_t r = 0; r < kMR; ++r) ar[r] = a[r] == pad ? zero : a_base + a[r];
    for (size_t k = 0; k < kc; k += 4, wk += kNR * 4) {
      __m512i wv[NP];
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p)
        wv[p] = _mm512_load_si512(reinterpret_cast<const __m512i*>(wk + p * panel_stride));
#pragma GCC unroll 6
      for (size_t r = 0; r < kMR; ++r) {
        const __m512i av = _mm512_set1_epi32(load_u32(ar[r] + k));
#pragma GCC unroll 4
        for (int p = 0; p < NP; ++p) {
          if constexpr (NP <= 2) {
            dpbusd(acc[r][p], av, wv[p]);
          } else {  // the asm form spilled accumulators with 4 panels (24 of them)
            acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], av, wv[p]);
          }
        }
      }
    }
  }
  const RequantZmm rq(ep);
  if constexpr (NP <= 2) {
    // Every row requantized and stored under a mask (none past mr): the loop
    // over the mr rows below indexes the accumulators at run time, which keeps
    // them all on the stack (objdump): at small K (a 3-channel stem layer, K =
    // 36 for 32 columns) that was a fifth of the time. With 3-4 panels the
    // unrolled form pushed accumulators out of registers in the K loop instead.
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) {
      const __mmask16 lanes = lane_mask16(cols, p);
      const __m512 bias = _mm512_loadu_ps(bias_s + p * kNR), mul = _mm512_loadu_ps(mult + p * kNR);
#pragma GCC unroll 6
      for (size_t r = 0; r < kMR; ++r)
        _mm512_mask_cvtepi32_storeu_epi8((r < mr ? c + r * c_stride : c) + p * kNR,
                                         r < mr ? lanes : 0, rq(acc[r][p], bias, mul));
    }
    return;
  }
  __m512 bias[NP], mul[NP];
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p) {
    bias[p] = _mm512_loadu_ps(bias_s + p * kNR);
    mul[p] = _mm512_loadu_ps(mult + p * kNR);
  }
  for (size_t r = 0; r < mr; ++r, c += c_stride) {
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) {
      const __m512i q = rq(acc[r][p], bias[p], mul[p]);
      const size_t n = p * kNR;
      if (n + kNR <= cols) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(c + n), _mm512_cvtepi32_epi8(q));
      } else if (n < cols) {
        _mm512_mask_cvtepi32_storeu_epi8(c + n, static_cast<__mmask16>((1u << (cols - n)) - 1), q);
      }
    }
  }
}

}  // namespace

void qu8_igemm_6x64c4__avx512vnni_requant(size_t mr, size_t nc, size_t kc, size_t ks,
                                          const size_t* a, const uint8_t* a_base, size_t pad,
                                          const uint8_t* zero, const void* w, int32_t a_zp,
                                          uint8_t* c, size_t c_stride, const RequantEpilogue* ep) {
  const size_t panel_stride = kNR * sizeof(int32_t) + ks * kc * kNR;
  const int8_t* wp = static_cast<const int8_t*>(w);
  for (size_t n0 = 0; n0 < nc; n0 += 4 * kNR, wp += 4 * panel_stride) {
    const size_t cols = nc - n0 < 4 * kNR ? nc - n0 : 4 * kNR;
    const float* b = ep->bias_s + n0;
    const float* m = ep->mult + n0;
    switch ((cols + kNR - 1) / kNR) {
      case 4:
        tile<4>(mr, cols, kc, ks, a, a_base, pad, zero, wp, panel_stride, a_zp, c + n0, c_stride, b,
                m, ep);
        break;
      case 3:
        tile<3>(mr, cols, kc, ks, a, a_base, pad, zero, wp, panel_stride, a_zp, c + n0, c_stride, b,
                m, ep);
        break;
      case 2:
        tile<2>(mr, cols, kc, ks, a, a_base, pad, zero, wp, panel_stride, a_zp, c + n0, c_stride, b,
                m, ep);
        break;
      default:
        tile<1>(mr, cols, kc, ks, a, a_base, pad, zero, wp, panel_stride, a_zp, c + n0, c_stride, b,
                m, ep);
        break;
    }
  }
}

}  // namespace npq
