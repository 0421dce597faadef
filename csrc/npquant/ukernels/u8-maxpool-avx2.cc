// Quantized max pooling, AVX2: 32 channels per vpmaxub, each 32-byte chunk of an
// output pixel kept in a register over all its taps (ukernel.h: u8_maxpool_fn). Channel
// counts that are not a multiple of 32 end with a chunk that overlaps the one before
// (max is idempotent, so the overlap stores the same bytes); below 32 channels a
// 16-byte chunk does the same, and below 16 a byte loop. Exact: max of codes.
#include <immintrin.h>

#include "../ukernel.h"

namespace npq {

namespace {

inline __m256i load32(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
inline __m128i load16(const uint8_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

}  // namespace

void u8_maxpool__avx2(size_t n, size_t ks, const uint8_t* const* ind, size_t c, uint8_t* y) {
  for (size_t i = 0; i < n; ++i, ind += ks, y += c) {
    if (c >= 32) {
      for (size_t j0 = 0; j0 < c; j0 += 32) {
        const size_t j = j0 + 32 <= c ? j0 : c - 32;
        __m256i m = load32(ind[0] + j);
        for (size_t t = 1; t < ks; ++t) m = _mm256_max_epu8(m, load32(ind[t] + j));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + j), m);
      }
    } else if (c >= 16) {
      for (size_t j0 = 0; j0 < c; j0 += 16) {
        const size_t j = j0 + 16 <= c ? j0 : c - 16;
        __m128i m = load16(ind[0] + j);
        for (size_t t = 1; t < ks; ++t) m = _mm_max_epu8(m, load16(ind[t] + j));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + j), m);
      }
    } else {
      for (size_t j = 0; j < c; ++j) {
        uint8_t m = ind[0][j];
        for (size_t t = 1; t < ks; ++t) m = ind[t][j] > m ? ind[t][j] : m;
        y[j] = m;
      }
    }
  }
}

}  // namespace npq
