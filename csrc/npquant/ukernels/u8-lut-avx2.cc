// 256-entry byte table lookup, AVX2: the table as 16 rows of 16 bytes; vpshufb
// looks up every byte's low nibble in all 16 rows, and the row its high nibble
// names is kept (a compare and a blend per row): 48 vector ops per 32 bytes, a
// third of the scalar loop's cost. Exact by construction: it only moves bytes.
#include <immintrin.h>

#include <cstring>

#include "../ukernel.h"

namespace npq {

namespace {

__attribute__((always_inline)) inline __m256i lut32(__m256i v, const __m256i (&rows)[16]) {
  const __m256i nib = _mm256_set1_epi8(0x0F);
  const __m256i lo = _mm256_and_si256(v, nib);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
  __m256i r = _mm256_shuffle_epi8(rows[0], lo);
#pragma GCC unroll 16
  for (int j = 1; j < 16; ++j) {
    const __m256i hit = _mm256_cmpeq_epi8(hi, _mm256_set1_epi8(static_cast<char>(j)));
    r = _mm256_blendv_epi8(r, _mm256_shuffle_epi8(rows[j], lo), hit);
  }
  return r;
}

}  // namespace

void u8_lut__avx2(size_t n, const uint8_t* x, uint8_t* y, const uint8_t* table) {
  __m256i rows[16];
  for (int j = 0; j < 16; ++j)
    rows[j] = _mm256_broadcastsi128_si256(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 16 * j)));
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), lut32(v, rows));
  }
  if (i < n) {  // the tail through a buffer (x and y may end at a page boundary)
    uint8_t buf[32] = {};
    std::memcpy(buf, x + i, n - i);
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(buf));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(buf), lut32(v, rows));
    std::memcpy(y + i, buf, n - i);
  }
}

}  // namespace npq
