// The AVX2 sign-trick arithmetic in K groups of 8 (qu8-gemm-3x16c8-avx2-sign.cc):
// the same exact step as avx2-sign.h (why it is exact: the 4x16c4 GEMM's header
// comment and docs/ukernels.md), on layout PackedLayout{nr=16, kr=8, k_align=8,
// w16=0, w127=1}. A K group of a panel is four ymm; ymm v holds columns
// 4v..4v+3, 8 k each, so after vpmaddwd lanes 2i and 2i+1 of vector v are two
// partial sums of column 4v+i (folded once per tile by fold_c8).
//
// Why K groups of 8: one vpbroadcastq of m and one of |s| serve 4 weight
// vectors (20 ALU ops) instead of 2 (10 ops) with 4-byte groups, and the
// weights are memory operands of vpxor (no weight registers), so 3 rows x 4
// accumulators fit in 16 ymm. On Zen 4 the loads, not the ALU ops, were what
// kept the 4x16c4 loop below the probe (bench/RESULTS.md).
//
// Everything here has internal linkage (anonymous namespace, always_inline),
// as in avx2-sign.h (docs/dispatch.md).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../ukernel.h"
#include "avx2-util.h"

namespace npq {
namespace {

constexpr size_t kC8NR = 16, kC8KR = 8;
constexpr size_t kC8NV = kC8NR / 4;  // weight vectors (4 columns x 8 k) per K group

// Prepared activations: per row and K group of 8, the mask m = (s < 0) then
// |s|, s = a ^ 0x80, 8 bytes each. Rows of up to kC8WholeK values are prepared
// once per call and reused by every panel; longer rows in kC8KC chunks per
// panel.
constexpr size_t kC8WholeK = 4096, kC8KC = 512;
constexpr size_t kC8Pitch = 2 * kC8WholeK + 64;  // bytes; 8 KiB apart would share L1 sets

// acc += vpmaddwd(vpmaddubsw(|s|, (w ^ m) - m), 1), w read from memory by vpxor.
// Inline asm keeps the chain in one temporary and the accumulators in place
// (see avx2-sign.h).
NPQ_INLINE void sign_dot_mem(__m256i& acc, __m256i m, __m256i u, const int8_t* w, __m256i ones) {
  __m256i t;
  __asm__(
      "vpxor %[w], %[m], %[t]\n\t"
      "vpsubb %[m], %[t], %[t]\n\t"
      "vpmaddubsw %[t], %[u], %[t]\n\t"
      "vpmaddwd %[ones], %[t], %[t]\n\t"
      "vpaddd %[t], %[acc], %[acc]"
      : [acc] "+x"(acc), [t] "=&x"(t)
      : [m] "x"(m), [u] "x"(u), [w] "m"(*reinterpret_cast<const __m256i*>(w)), [ones] "x"(ones));
}

// n (a multiple of 8) activation bytes at src -> 2n prepared bytes at dst.
// Reads exactly [src, src + n).
NPQ_INLINE void c8_prepare_run(const uint8_t* src, size_t n, uint8_t* dst) {
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  size_t j = 0;
  for (; j + 32 <= n; j += 32) {
    const __m256i s =
        _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + j)), flip);
    const __m256i u = _mm256_abs_epi8(s);
    const __m256i m = _mm256_cmpgt_epi8(_mm256_setzero_si256(), s);
    // In-lane unpacks give K groups 0 2 and 1 3; reorder to 0 1, 2 3.
    const __m256i lo = _mm256_unpacklo_epi64(m, u), hi = _mm256_unpackhi_epi64(m, u);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * j),
                        _mm256_permute2x128_si256(lo, hi, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * j + 32),
                        _mm256_permute2x128_si256(lo, hi, 0x31));
  }
  for (; j < n; j += 8) {
    const __m128i s = _mm_xor_si128(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + j)),
                                    _mm256_castsi256_si128(flip));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * j),
                     _mm_unpacklo_epi64(_mm_cmpgt_epi8(_mm_setzero_si128(), s), _mm_abs_epi8(s)));
  }
}

// One K group (at prepared offset k) of M rows x 16 columns; rows pitch bytes apart.
template <size_t M>
NPQ_INLINE void c8_step(const uint8_t* buf, size_t pitch, size_t k, const int8_t* wk, __m256i ones,
                        __m256i (&acc)[M][kC8NV]) {
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r) {
    int64_t m8, u8;
    std::memcpy(&m8, buf + r * pitch + 2 * k, 8);
    std::memcpy(&u8, buf + r * pitch + 2 * k + 8, 8);
    const __m256i m = _mm256_set1_epi64x(m8), u = _mm256_set1_epi64x(u8);
#pragma GCC unroll 16
    for (size_t v = 0; v < kC8NV; ++v) sign_dot_mem(acc[r][v], m, u, wk + 32 * v, ones);
  }
}

// Four accumulators of (4 columns x 2 partial sums) -> two of 8 columns in order.
// vphaddd gives columns 0 1 4 5 | 2 3 6 7 of each pair of vectors; vpermq 0xD8
// puts them in order.
template <size_t M>
NPQ_INLINE void fold_c8(const __m256i (&acc)[M][kC8NV], __m256i (&out)[M][2]) {
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r)
#pragma GCC unroll 2
    for (size_t h = 0; h < 2; ++h)
      out[r][h] =
          _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[r][2 * h], acc[r][2 * h + 1]), 0xD8);
}

}  // namespace
}  // namespace npq
