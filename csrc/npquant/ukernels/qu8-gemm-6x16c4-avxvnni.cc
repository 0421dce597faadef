// AVX-VNNI GEMM (ymm vpdpbusd, VEX), 6 rows x 16 columns, K in groups of 4.
// Layout: PackedLayout{nr=16, kr=4, k_align=4}: each K group of a panel is two
// ymm of 8 columns x 4 bytes. u8 x s8 is vpdpbusd's native operand pair and
// its int32 sums cannot saturate, so the kernel is exact for every input.
//
// Built twice (cmake/isa.cmake): with -mavxvnni (the real kernel, VEX, 16
// registers) and, as a test stand-in on CPUs that have AVX-512 VNNI but not
// AVX-VNNI, with AVX-512 flags and NPQ_AVXVNNI_EVEX, which selects the EVEX
// encoding of the same instruction and names the functions *_avxvnni_evex_*.
// Everything else (tiling, epilogues) is the same code.
#include <immintrin.h>

#include <cstring>

#include "../ukernel.h"
#include "avx2-util.h"

#if defined(NPQ_AVXVNNI_EVEX)
#define NPQ_FN(suffix) qu8_gemm_6x16c4__avxvnni_evex_##suffix
#else
#define NPQ_FN(suffix) qu8_gemm_6x16c4__avxvnni_##suffix
#endif

namespace npq {
namespace {

constexpr size_t kMR = 6, kNV = 2, kNR = kNV * 8, kKR = 4;

// acc += dpbusd(a, w). Inline asm keeps GCC from copying accumulators between
// register sets on every K step, and pins the encoding.
NPQ_INLINE void dpbusd(__m256i& acc, __m256i a, __m256i w) {
#if defined(NPQ_AVXVNNI_EVEX)
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(w));
#else
  __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(a), "x"(w));
#endif
}

NPQ_INLINE __m256i bcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

template <size_t M>
NPQ_INLINE void zero(__m256i (&acc)[M][kNV]) {
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r)
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v) acc[r][v] = _mm256_setzero_si256();
}

template <size_t M>
NPQ_INLINE void add_into(__m256i (&acc)[M][kNV], const __m256i (&other)[M][kNV]) {
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r)
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v) acc[r][v] = _mm256_add_epi32(acc[r][v], other[r][v]);
}

// One K group (4 bytes per row) into the accumulator set acc.
template <size_t M>
NPQ_INLINE void step(const uint8_t* const* ar, size_t k, const int8_t* wk, __m256i (&acc)[M][kNV]) {
  __m256i wv[kNV];
#pragma GCC unroll 16
  for (size_t v = 0; v < kNV; ++v)
    wv[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(wk + 32 * v));
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r) {
    const __m256i av = bcast4(ar[r] + k);
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v) dpbusd(acc[r][v], av, wv[v]);
  }
}

// acc[r][v] = sum over kp of a[r][k] * w[8v + j][k] for one panel. With one or
// two rows there are too few accumulators to hide vpdpbusd's latency, so a
// second set takes the odd K groups.
template <size_t M>
NPQ_INLINE void accumulate(size_t kp, const uint8_t* const* ar, const int8_t* w,
                           __m256i (&acc)[M][kNV]) {
  zero<M>(acc);
  size_t k = 0;
  if constexpr (M <= 2) {
    __m256i acc1[M][kNV];
    zero<M>(acc1);
    for (; k + 2 * kKR <= kp; k += 2 * kKR) {
      step<M>(ar, k, w + k * kNR, acc);
      step<M>(ar, k + kKR, w + (k + kKR) * kNR, acc1);
    }
    add_into<M>(acc, acc1);
  }
  for (; k < kp; k += kKR) step<M>(ar, k, w + k * kNR, acc);
}

struct Requant {
  const RequantEpilogue* ep;
  uint8_t* c;
  size_t c_stride;

  // Not inlined (with the copy in gemm_rows): inlined into the 6-row kernel,
  // GCC kept all 12 accumulators in memory inside the K loop (a load and a
  // store around every vpdpbusd in objdump; the static path ran at 40% of the
  // dynamic one). A call per panel costs a few stores and loads.
  template <size_t M>
  __attribute__((noinline)) void store(size_t n0, size_t nn, __m256i (&acc)[M][kNV]) const {
    requant_store_ymm<M, kNV>(ep, c, c_stride, n0, nn, acc);
  }
};

struct Dequant {
  const DequantEpilogue* ep;
  float* c;
  size_t c_stride;

  template <size_t M>
  NPQ_INLINE void store(size_t n0, size_t nn, __m256i (&acc)[M][kNV]) const {
    dequant_store_ymm<M, kNV>(ep, c, c_stride, n0, nn, acc);
  }
};

// One function per row count (noinline): each K loop gets its own register
// allocation, as with a switch GCC would otherwise inline into one body.
template <size_t M, class Out>
__attribute__((noinline)) void gemm_rows(size_t nc, size_t kp, const uint8_t* a, size_t a_stride,
                                         const void* w, const int32_t* a_zp, const Out& out) {
  const uint8_t* ar[M];
  for (size_t r = 0; r < M; ++r) ar[r] = a + r * a_stride;
  const size_t panel_stride = kNR * sizeof(int32_t) + kp * kNR;
  const int8_t* panel = static_cast<const int8_t*>(w);
  for (size_t n0 = 0; n0 < nc; n0 += kNR, panel += panel_stride) {
    __m256i acc[M][kNV];
    accumulate<M>(kp, ar, panel + kNR * sizeof(int32_t), acc);
    // Zero-point term: acc -= a_zp[r] * colsum (wrapping int32, exact overall).
    for (size_t v = 0; v < kNV; ++v) {
      const __m256i colsum = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + 32 * v));
      for (size_t r = 0; r < M; ++r)
        acc[r][v] =
            _mm256_sub_epi32(acc[r][v], _mm256_mullo_epi32(_mm256_set1_epi32(a_zp[r]), colsum));
    }
    const size_t nn = nc - n0 < kNR ? nc - n0 : kNR;
    // The epilogue gets a copy: the address of acc itself must not escape, or
    // GCC keeps the accumulators in memory inside the K loop.
    __m256i result[M][kNV];
    for (size_t r = 0; r < M; ++r)
      for (size_t v = 0; v < kNV; ++v) result[r][v] = acc[r][v];
    out.template store<M>(n0, nn, result);
  }
}

template <class Out>
void gemm(size_t mr, size_t nc, size_t kp, const uint8_t* a, size_t a_stride, const void* w,
          const int32_t* a_zp, const Out& out) {
  with_rows<kMR>(mr,
                 [&](auto m) { gemm_rows<decltype(m)::value>(nc, kp, a, a_stride, w, a_zp, out); });
}

}  // namespace

void NPQ_FN(requant)(size_t mr, size_t nc, size_t kp, const uint8_t* a, size_t a_stride,
                     const void* w, const int32_t* a_zp, uint8_t* c, size_t c_stride,
                     const RequantEpilogue* ep) {
  gemm(mr, nc, kp, a, a_stride, w, a_zp, Requant{ep, c, c_stride});
}

void NPQ_FN(dequant)(size_t mr, size_t nc, size_t kp, const uint8_t* a, size_t a_stride,
                     const void* w, const int32_t* a_zp, float* c, size_t c_stride,
                     const DequantEpilogue* ep) {
  gemm(mr, nc, kp, a, a_stride, w, a_zp, Dequant{ep, c, c_stride});
}

}  // namespace npq
