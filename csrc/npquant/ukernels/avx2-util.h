// Small AVX2 helpers shared by the x86 ukernel files compiled with AVX2 or above
// (avx2, avx2-sign, avxvnni): the lane mask of vmaskmovps and storing the low bytes
// of a tile row's last, partial block.
//
// Everything here has internal linkage (anonymous namespace, always_inline): each
// ukernel file that includes it gets its own copy compiled with its own flags, so no
// symbol is shared between translation units (docs/dispatch.md).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace npq {
namespace {

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

}  // namespace
}  // namespace npq
