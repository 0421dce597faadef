// AVX2 helpers shared by the x86 ukernel files compiled with AVX2 or above (avx2,
// avx2-sign, avxvnni; avx512-util.h builds on it): the lane mask of vmaskmovps, the
// partial-row byte store, the GEMM epilogues on ymm (the one requantization and the
// dequantization of params.h, and their stores to a tile row), and the switch from a
// run-time row count to a kernel instantiated per row count.
//
// Everything here has internal linkage (anonymous namespace, always_inline): each
// ukernel file that includes it gets its own copy compiled with its own flags, so no
// symbol is shared between translation units (docs/dispatch.md).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "../params.h"

namespace npq {
namespace {

#define NPQ_INLINE inline __attribute__((always_inline))

// All ones in the 32-bit lanes < n (n clamped to 0..8), for vmaskmovps / vpmaskmovd.
inline __attribute__((always_inline)) __m256i lane_mask(size_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n > 8 ? 8 : n)), idx);
}

// Stores the low nn (0..16) bytes of b at p.
inline __attribute__((always_inline)) void store_low_bytes(uint8_t* p, size_t nn, __m128i b) {
  if (nn == 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), b);
    return;
  }
  if (nn & 8) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), b);
    b = _mm_srli_si128(b, 8);
    p += 8;
  }
  if (nn & 4) {
    const int32_t v = _mm_cvtsi128_si32(b);
    std::memcpy(p, &v, 4);
    b = _mm_srli_si128(b, 4);
    p += 4;
  }
  if (nn & 2) {
    const int16_t v = static_cast<int16_t>(_mm_extract_epi16(b, 0));
    std::memcpy(p, &v, 2);
    b = _mm_srli_si128(b, 2);
    p += 2;
  }
  if (nn & 1) *p = static_cast<uint8_t>(_mm_extract_epi8(b, 0));
}

// Calls f(std::integral_constant<size_t, m>()) with m = mr for mr in 1..MR-1 and
// m = MR otherwise: a tile kernel instantiated for every row count, so a partial row
// block does no wasted work.
template <size_t MR, class F, size_t... I>
NPQ_INLINE void with_rows_(size_t mr, const F& f, std::index_sequence<I...>) {
  const bool done =
      ((mr == I + 1 ? (f(std::integral_constant<size_t, I + 1>()), true) : false) || ...);
  if (!done) f(std::integral_constant<size_t, MR>());
}
template <size_t MR, class F>
NPQ_INLINE void with_rows(size_t mr, const F& f) {
  with_rows_<MR>(mr, f, std::make_index_sequence<MR - 1>());
}

// The static GEMM's requantization (params.h RequantEpilogue) of 8 columns, the one
// formulation of every x86 kernel: v = fl(fl(float(acc) + bias_s) * mult), clamped to
// [out_min - out_zp, out_max - out_zp] before rounding, which equals clamping
// nearbyint(v) + out_zp to [out_min, out_max] (rounding is monotone and keeps the
// integer bounds); a NaN v takes the lower bound (vmaxps returns its second operand).
struct RequantYmm {
  __m256 lo, hi;
  __m256i zp;
  explicit NPQ_INLINE RequantYmm(const RequantEpilogue* ep)
      : lo(_mm256_set1_ps(static_cast<float>(ep->out_min - ep->out_zp))),
        hi(_mm256_set1_ps(static_cast<float>(ep->out_max - ep->out_zp))),
        zp(_mm256_set1_epi32(ep->out_zp)) {}
  // The output codes, as int32 in [out_min, out_max].
  NPQ_INLINE __m256i operator()(__m256i acc, __m256 bias_s, __m256 mult) const {
    __m256 v = _mm256_mul_ps(_mm256_add_ps(_mm256_cvtepi32_ps(acc), bias_s), mult);
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    return _mm256_add_epi32(_mm256_cvtps_epi32(v), zp);
  }
};

// Requantizes rows 0..rows-1 (rows <= M) of a tile of NV (1 or 2) x 8 columns (columns
// n0..n0+nn of the epilogue arrays) and stores nn bytes per row at c + r*c_stride + n0.
template <size_t M, size_t NV>
NPQ_INLINE void requant_store_ymm(const RequantEpilogue* ep, uint8_t* c, size_t c_stride, size_t n0,
                                  size_t nn, const __m256i (&acc)[M][NV], size_t rows = M) {
  static_assert(NV == 1 || NV == 2, "8 or 16 columns");
  const RequantYmm rq(ep);
  __m256 bias[NV], mult[NV];
  for (size_t v = 0; v < NV; ++v) {
    bias[v] = _mm256_loadu_ps(ep->bias_s + n0 + 8 * v);
    mult[v] = _mm256_loadu_ps(ep->mult + n0 + 8 * v);
  }
  // Fully unrolled (M is a constant): an indexed acc would live on the stack.
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r) {
    if (r >= rows) break;
    __m128i b;
    if constexpr (NV == 1) {
      // int32 in 0..255 -> 8 bytes in column order.
      const __m256i q = rq(acc[r][0], bias[0], mult[0]);
      const __m128i w16 =
          _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
      b = _mm_packus_epi16(w16, w16);
    } else {
      // Columns 0-7 and 8-15 -> int16 0-3 8-11 | 4-7 12-15 -> (vpermq) 0..15 -> 16 bytes.
      const __m256i q0 = rq(acc[r][0], bias[0], mult[0]), q1 = rq(acc[r][1], bias[1], mult[1]);
      const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
      b = _mm_packus_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));
    }
    store_low_bytes(c + r * c_stride + n0, nn, b);
  }
}

// The dynamic GEMM's dequantization (params.h DequantEpilogue) of rows 0..M-1 of a tile
// of NV x 8 columns: y = fl(fl(float(acc) * fl(a_scale[r] * w_scale)) + bias), nn floats
// per row stored at row r of c (c_stride bytes apart) from column n0.
template <size_t M, size_t NV>
NPQ_INLINE void dequant_store_ymm(const DequantEpilogue* ep, float* c, size_t c_stride, size_t n0,
                                  size_t nn, const __m256i (&acc)[M][NV]) {
  for (size_t v = 0; v < NV; ++v) {
    if (nn <= 8 * v) break;
    const __m256 ws = _mm256_loadu_ps(ep->w_scale + n0 + 8 * v);
    const __m256 bias = _mm256_loadu_ps(ep->bias + n0 + 8 * v);
    const bool full = nn >= 8 * (v + 1);
    const __m256i mask = lane_mask(nn - 8 * v);
    for (size_t r = 0; r < M; ++r) {
      const __m256 s = _mm256_mul_ps(_mm256_set1_ps(ep->a_scale[r]), ws);
      const __m256 y = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][v]), s), bias);
      float* cr = reinterpret_cast<float*>(reinterpret_cast<char*>(c) + r * c_stride) + n0 + 8 * v;
      if (full)
        _mm256_storeu_ps(cr, y);
      else
        _mm256_maskstore_ps(cr, mask, y);
    }
  }
}

}  // namespace
}  // namespace npq
