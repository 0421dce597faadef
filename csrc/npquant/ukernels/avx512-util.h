// AVX-512 helpers shared by the x86 ukernel files compiled with AVX-512 (avx512vnni,
// amx): the lane mask of a partial 16-column vector and the GEMM epilogues on zmm (the
// requantization and dequantization of params.h, the formulation of avx2-util.h's).
//
// Everything here has internal linkage (anonymous namespace, always_inline): each
// ukernel file that includes it gets its own copy compiled with its own flags, so no
// symbol is shared between translation units (docs/dispatch.md).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "avx2-util.h"

namespace npq {
namespace {

// Valid lanes of vector v (columns 16v..16v+15) when nn columns are stored.
NPQ_INLINE __mmask16 lane_mask16(size_t nn, size_t v) {
  if (nn >= 16 * (v + 1)) return 0xFFFF;
  if (nn <= 16 * v) return 0;
  return static_cast<__mmask16>((1u << (nn - 16 * v)) - 1);
}

// RequantYmm (avx2-util.h) on 16 columns.
struct RequantZmm {
  __m512 lo, hi;
  __m512i zp;
  explicit NPQ_INLINE RequantZmm(const RequantEpilogue* ep)
      : lo(_mm512_set1_ps(static_cast<float>(ep->out_min - ep->out_zp))),
        hi(_mm512_set1_ps(static_cast<float>(ep->out_max - ep->out_zp))),
        zp(_mm512_set1_epi32(ep->out_zp)) {}
  // The output codes, as int32 in [out_min, out_max].
  NPQ_INLINE __m512i operator()(__m512i acc, __m512 bias_s, __m512 mult) const {
    __m512 v = _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(acc), bias_s), mult);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    return _mm512_add_epi32(_mm512_cvtps_epi32(v), zp);
  }
};

// y = fl(fl(float(acc) * fl(a_scale * w_scale)) + bias) (params.h DequantEpilogue).
NPQ_INLINE __m512 dequant_zmm(__m512i acc, float a_scale, __m512 w_scale, __m512 bias) {
  const __m512 s = _mm512_mul_ps(_mm512_set1_ps(a_scale), w_scale);
  return _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), s), bias);
}

// Requantizes rows 0..M-1 of a tile of NV x 16 columns (columns n0..n0+nn of the
// epilogue arrays) and stores nn bytes per row at c + r*c_stride + n0.
template <size_t M, size_t NV>
NPQ_INLINE void requant_store_zmm(const RequantEpilogue* ep, uint8_t* c, size_t c_stride, size_t n0,
                                  size_t nn, const __m512i (&acc)[M][NV]) {
  const RequantZmm rq(ep);
#pragma GCC unroll 16
  for (size_t v = 0; v < NV; ++v) {
    const __mmask16 mask = lane_mask16(nn, v);
    if (!mask) continue;
    const __m512 bias = _mm512_loadu_ps(ep->bias_s + n0 + 16 * v);
    const __m512 mult = _mm512_loadu_ps(ep->mult + n0 + 16 * v);
#pragma GCC unroll 16
    for (size_t r = 0; r < M; ++r)
      _mm512_mask_cvtepi32_storeu_epi8(c + r * c_stride + n0 + 16 * v, mask,
                                       rq(acc[r][v], bias, mult));
  }
}

// Dequantizes rows 0..M-1 of a tile of NV x 16 columns; nn floats per row stored at
// row r of c (c_stride bytes apart) from column n0.
template <size_t M, size_t NV>
NPQ_INLINE void dequant_store_zmm(const DequantEpilogue* ep, float* c, size_t c_stride, size_t n0,
                                  size_t nn, const __m512i (&acc)[M][NV]) {
#pragma GCC unroll 16
  for (size_t v = 0; v < NV; ++v) {
    const __mmask16 mask = lane_mask16(nn, v);
    if (!mask) continue;
    const __m512 ws = _mm512_loadu_ps(ep->w_scale + n0 + 16 * v);
    const __m512 bias = _mm512_loadu_ps(ep->bias + n0 + 16 * v);
#pragma GCC unroll 16
    for (size_t r = 0; r < M; ++r) {
      float* cr = reinterpret_cast<float*>(reinterpret_cast<char*>(c) + r * c_stride);
      _mm512_mask_storeu_ps(cr + n0 + 16 * v, mask,
                            dequant_zmm(acc[r][v], ep->a_scale[r], ws, bias));
    }
  }
}

}  // namespace
}  // namespace npq
