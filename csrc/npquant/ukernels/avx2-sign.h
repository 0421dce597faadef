// The AVX2 sign-trick arithmetic of qu8-gemm-4x16c4-avx2-sign.cc (a 4x16c4
// sign igemm shared it until the full-range 6x16c2 igemm replaced it; why it
// is exact: the GEMM's header comment and docs/ukernels.md). Layout PackedLayout{nr=16, kr=4,
// k_align=4, w16=0, w127=1}: a K group of a panel is two ymm (columns 0-7 and 8-15, 4 k each).
//
// Everything here has internal linkage (anonymous namespace, always_inline):
// each ukernel file that includes it gets its own copy compiled with its own
// flags, so no symbol is shared between translation units (docs/dispatch.md).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../ukernel.h"
#include "avx2-util.h"

namespace npq {
namespace {

constexpr size_t kSignNR = 16, kSignKR = 4;
constexpr size_t kSignNV = kSignNR / 8;  // weight vectors (8 columns x 4 k) per K group

// Prepared activations: per row and K group of 4, the sign operand (the mask
// m = (s < 0), or s itself for vpsignb) then |s|, s = a ^ 0x80, 4 bytes each.
// Rows of up to kSignWholeK values are prepared once per call and reused by
// every panel; longer rows in kSignKC chunks per panel.
constexpr size_t kSignWholeK = 4096, kSignKC = 512;
constexpr size_t kSignPitch = 2 * kSignWholeK + 64;  // bytes; 8 KiB apart would share L1 sets

// acc += vpmaddwd(vpmaddubsw(|s|, (w ^ m) - m), 1), m the sign mask of s
// (or, with NPQ_SIGN_VPSIGNB, s itself for vpsignb). Inline asm keeps the
// chain in one temporary and the accumulators in place (GCC 12 copies
// accumulators between registers around intrinsics, see docs/ukernels.md).
NPQ_INLINE void sign_dot(__m256i& acc, __m256i s, __m256i u, __m256i w, __m256i ones) {
  __m256i t;
#if defined(NPQ_SIGN_VPSIGNB)
  __asm__(
      "vpsignb %[s], %[w], %[t]\n\t"
#else
  __asm__(
      "vpxor %[s], %[w], %[t]\n\t"
      "vpsubb %[s], %[t], %[t]\n\t"
#endif
      "vpmaddubsw %[t], %[u], %[t]\n\t"
      "vpmaddwd %[ones], %[t], %[t]\n\t"
      "vpaddd %[t], %[acc], %[acc]"
      : [acc] "+x"(acc), [t] "=&x"(t)
      : [s] "x"(s), [u] "x"(u), [w] "x"(w), [ones] "x"(ones));
}

// n (a multiple of 4) activation bytes at src -> 2n prepared bytes at dst.
// Reads exactly [src, src + n).
NPQ_INLINE void sign_prepare_run(const uint8_t* src, size_t n, uint8_t* dst) {
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  size_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m256i s =
        _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + j)), flip);
    const __m256i u = _mm256_abs_epi8(s);
#if !defined(NPQ_SIGN_VPSIGNB)
    s = _mm256_cmpgt_epi8(_mm256_setzero_si256(), s);
#endif
    // In-lane unpacks give K groups 0 1 4 5 and 2 3 6 7; reorder to 0-3, 4-7.
    const __m256i lo = _mm256_unpacklo_epi32(s, u), hi = _mm256_unpackhi_epi32(s, u);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * j),
                        _mm256_permute2x128_si256(lo, hi, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * j + 32),
                        _mm256_permute2x128_si256(lo, hi, 0x31));
  }
  for (; j < n; j += 4) {
    int32_t v;
    std::memcpy(&v, src + j, 4);
    const __m128i s = _mm_xor_si128(_mm_cvtsi32_si128(v), _mm256_castsi256_si128(flip));
#if defined(NPQ_SIGN_VPSIGNB)
    const __m128i sg = s;
#else
    const __m128i sg = _mm_cmpgt_epi8(_mm_setzero_si128(), s);
#endif
    _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + 2 * j),
                     _mm_unpacklo_epi32(sg, _mm_abs_epi8(s)));
  }
}

// One K group (at prepared offset k) of M rows x 16 columns.
template <size_t M>
NPQ_INLINE void sign_step(const uint8_t* buf, size_t k, const int8_t* wk, __m256i ones,
                          __m256i (&acc)[M][kSignNV]) {
  __m256i wv[kSignNV];
#pragma GCC unroll 16
  for (size_t v = 0; v < kSignNV; ++v)
    wv[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(wk) + v);
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r) {
    int32_t s4, u4;
    std::memcpy(&s4, buf + r * kSignPitch + 2 * k, 4);
    std::memcpy(&u4, buf + r * kSignPitch + 2 * k + 4, 4);
    const __m256i s = _mm256_set1_epi32(s4), u = _mm256_set1_epi32(u4);
#pragma GCC unroll 16
    for (size_t v = 0; v < kSignNV; ++v) sign_dot(acc[r][v], s, u, wv[v], ones);
  }
}

}  // namespace
}  // namespace npq
