// AVX-512 VNNI GEMM, 8 rows x 32 columns, K in groups of 4 (zmm vpdpbusd).
// Layout: PackedLayout{nr=32, kr=4, k_align=4}: each K group of a panel is two
// zmm of 16 columns x 4 bytes. u8 activations and s8 weights are exactly the
// operand types of vpdpbusd, so no offset or XOR is needed; the four products
// of a group (at most 4*255*128 in magnitude) are summed in int32 without
// saturation, so the kernel is exact for every input.
//
// Rows: the kernel is instantiated for every row count 1..8, so a partial row
// block does no wasted work. Few rows give few accumulators; then the K loop
// is unrolled over independent accumulator sets to hide vpdpbusd's latency.
#include <immintrin.h>

#include <cstring>

#include "../ukernel.h"
#include "avx512-util.h"

namespace npq {
namespace {

constexpr size_t kMR = 8, kNV = 2, kNR = kNV * 16, kKR = 4;

NPQ_INLINE __m512i bcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// acc += dpbusd(a, w). Inline asm because GCC 12 otherwise copies every
// accumulator between two register sets on each K step (seen in objdump).
NPQ_INLINE void dpbusd(__m512i& acc, __m512i a, __m512i w) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(w));
}

// One K group (4 bytes per row) into the accumulator set acc.
template <size_t M>
NPQ_INLINE void step(const uint8_t* const* ar, size_t k, const int8_t* wk, __m512i (&acc)[M][kNV]) {
  __m512i wv[kNV];
#pragma GCC unroll 16
  for (size_t v = 0; v < kNV; ++v) wv[v] = _mm512_load_si512(wk + 64 * v);
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r) {
    const __m512i av = bcast4(ar[r] + k);
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v) dpbusd(acc[r][v], av, wv[v]);
  }
}

template <size_t M>
NPQ_INLINE void zero(__m512i (&acc)[M][kNV]) {
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r)
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v) acc[r][v] = _mm512_setzero_si512();
}

// acc[r][v] = init[v] + sum over kp of a[r][k] * w[16v + j][k] for one panel.
template <size_t M>
NPQ_INLINE void accumulate(size_t kp, const uint8_t* const* ar, const int8_t* w,
                           const __m512i (&init)[kNV], __m512i (&acc)[M][kNV]) {
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r)
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v) acc[r][v] = init[v];
  size_t k = 0;
  if constexpr (M * kNV < 8) {
    // Few rows: a second (and fourth) accumulator set over alternate K groups.
    __m512i acc1[M][kNV];
    zero<M>(acc1);
    if constexpr (M * kNV < 4) {
      __m512i acc2[M][kNV], acc3[M][kNV];
      zero<M>(acc2);
      zero<M>(acc3);
      for (; k + 4 * kKR <= kp; k += 4 * kKR) {
        step<M>(ar, k, w + k * kNR, acc);
        step<M>(ar, k + kKR, w + (k + kKR) * kNR, acc1);
        step<M>(ar, k + 2 * kKR, w + (k + 2 * kKR) * kNR, acc2);
        step<M>(ar, k + 3 * kKR, w + (k + 3 * kKR) * kNR, acc3);
      }
#pragma GCC unroll 16
      for (size_t r = 0; r < M; ++r)
#pragma GCC unroll 16
        for (size_t v = 0; v < kNV; ++v) acc2[r][v] = _mm512_add_epi32(acc2[r][v], acc3[r][v]);
#pragma GCC unroll 16
      for (size_t r = 0; r < M; ++r)
#pragma GCC unroll 16
        for (size_t v = 0; v < kNV; ++v) acc[r][v] = _mm512_add_epi32(acc[r][v], acc2[r][v]);
    }
    for (; k + 2 * kKR <= kp; k += 2 * kKR) {
      step<M>(ar, k, w + k * kNR, acc);
      step<M>(ar, k + kKR, w + (k + kKR) * kNR, acc1);
    }
#pragma GCC unroll 16
    for (size_t r = 0; r < M; ++r)
#pragma GCC unroll 16
      for (size_t v = 0; v < kNV; ++v) acc[r][v] = _mm512_add_epi32(acc[r][v], acc1[r][v]);
  }
  for (; k < kp; k += kKR) step<M>(ar, k, w + k * kNR, acc);
}

struct Requant {
  const RequantEpilogue* ep;
  uint8_t* c;
  size_t c_stride;

  template <size_t M>
  NPQ_INLINE void store(size_t n0, size_t nn, __m512i (&acc)[M][kNV]) const {
    requant_store_zmm<M, kNV>(ep, c, c_stride, n0, nn, acc);
  }
};

struct Dequant {
  const DequantEpilogue* ep;
  float* c;
  size_t c_stride;

  template <size_t M>
  NPQ_INLINE void store(size_t n0, size_t nn, __m512i (&acc)[M][kNV]) const {
    dequant_store_zmm<M, kNV>(ep, c, c_stride, n0, nn, acc);
  }
};

// One function per row count (noinline): each K loop gets its own register
// allocation, as with a switch GCC would otherwise inline into one body.
template <size_t M, class Out>
__attribute__((noinline)) void gemm_rows(size_t nc, size_t kp, const uint8_t* a, size_t a_stride,
                                         const void* w, const int32_t* a_zp, const Out& out) {
  const uint8_t* ar[M];
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r) ar[r] = a + r * a_stride;
  const size_t panel_stride = kNR * sizeof(int32_t) + kp * kNR;
  const int8_t* panel = static_cast<const int8_t*>(w);
  // Zero-point term: acc -= a_zp[r] * colsum (wrapping int32, exact overall: the
  // order of int32 additions does not change the sum). With one zero point for
  // every row (static layers) the accumulators start at -zp * colsum: one
  // multiply per vector instead of one per row and vector, which at small K
  // (MobileNet's 1x1 convs, K = 16..32) is a quarter of the multiplies.
  bool uniform = true;
#pragma GCC unroll 16
  for (size_t r = 1; r < M; ++r) uniform &= a_zp[r] == a_zp[0];
  const __m512i zp0 = _mm512_set1_epi32(uniform ? a_zp[0] : 0);
  for (size_t n0 = 0; n0 < nc; n0 += kNR, panel += panel_stride) {
    __m512i init[kNV], acc[M][kNV];
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v)
      init[v] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                 _mm512_mullo_epi32(zp0, _mm512_load_si512(panel + 64 * v)));
    accumulate<M>(kp, ar, panel + kNR * sizeof(int32_t), init, acc);
    if (!uniform) {
#pragma GCC unroll 16
      for (size_t v = 0; v < kNV; ++v) {
        const __m512i colsum = _mm512_load_si512(panel + 64 * v);
#pragma GCC unroll 16
        for (size_t r = 0; r < M; ++r)
          acc[r][v] =
              _mm512_sub_epi32(acc[r][v], _mm512_mullo_epi32(_mm512_set1_epi32(a_zp[r]), colsum));
      }
    }
    const size_t nn = nc - n0 < kNR ? nc - n0 : kNR;
    out.template store<M>(n0, nn, acc);
  }
}

template <class Out>
void gemm(size_t mr, size_t nc, size_t kp, const uint8_t* a, size_t a_stride, const void* w,
          const int32_t* a_zp, const Out& out) {
  with_rows<kMR>(mr,
                 [&](auto m) { gemm_rows<decltype(m)::value>(nc, kp, a, a_stride, w, a_zp, out); });
}

}  // namespace

void qu8_gemm_8x32c4__avx512vnni_requant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                         size_t a_stride, const void* w, const int32_t* a_zp,
                                         uint8_t* c, size_t c_stride, const RequantEpilogue* ep) {
  gemm(mr, nc, kp, a, a_stride, w, a_zp, Requant{ep, c, c_stride});
}

void qu8_gemm_8x32c4__avx512vnni_dequant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                         size_t a_stride, const void* w, const int32_t* a_zp,
                                         float* c, size_t c_stride, const DequantEpilogue* ep) {
  gemm(mr, nc, kp, a, a_stride, w, a_zp, Dequant{ep, c, c_stride});
}

}  // namespace npq
