// 256-entry byte table lookup, AVX-512 (BW): the table as 16 rows of 16 bytes,
// each broadcast to the four 128-bit lanes; per row a compare of the high
// nibbles gives a mask and a masked vpshufb writes that row's bytes: 32 ops per
// 64 bytes, masked loads and stores for the tail. (vpermi2b would take 4, but
// needs VBMI, which not every AVX-512 VNNI CPU has.) It only moves bytes: exact.
#include <immintrin.h>

#include "../ukernel.h"

namespace npq {

namespace {

__attribute__((always_inline)) inline __m512i lut64(__m512i v, const __m512i (&rows)[16]) {
  const __m512i nib = _mm512_set1_epi8(0x0F);
  const __m512i lo = _mm512_and_si512(v, nib);
  const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
  __m512i r = _mm512_shuffle_epi8(rows[0], lo);
#pragma GCC unroll 16
  for (int j = 1; j < 16; ++j) {
    const __mmask64 hit = _mm512_cmpeq_epi8_mask(hi, _mm512_set1_epi8(static_cast<char>(j)));
    r = _mm512_mask_shuffle_epi8(r, hit, rows[j], lo);
  }
  return r;
}

}  // namespace

void u8_lut__avx512vnni(size_t n, const uint8_t* x, uint8_t* y, const uint8_t* table) {
  __m512i rows[16];
  for (int j = 0; j < 16; ++j)  // (not _mm512_broadcast_i32x4: GCC 12 warns in its header)
    rows[j] = _mm512_maskz_broadcast_i32x4(
        0xFFFF, _mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 16 * j)));
  size_t i = 0;
  for (; i + 64 <= n; i += 64) _mm512_storeu_si512(y + i, lut64(_mm512_loadu_si512(x + i), rows));
  if (i < n) {
    const __mmask64 m = _cvtu64_mask64((~uint64_t{0}) >> (64 - (n - i)));
    _mm512_mask_storeu_epi8(y + i, m, lut64(_mm512_maskz_loadu_epi8(m, x + i), rows));
  }
}

}  // namespace npq
