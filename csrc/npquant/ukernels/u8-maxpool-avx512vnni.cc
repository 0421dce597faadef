// Quantized max pooling, AVX-512 BW: 64 channels per vpmaxub, each 64-byte chunk of an
// output pixel kept in a register over all its taps (ukernel.h: u8_maxpool_fn); the
// last chunk of a pixel is loaded and stored under a byte mask, so any channel count
// runs without a scalar tail. Exact: max of codes.
#include <immintrin.h>

#include "../ukernel.h"

namespace npq {

void u8_maxpool__avx512vnni(size_t n, size_t ks, const uint8_t* const* ind, size_t c, uint8_t* y) {
  const size_t tail = c % 64;
  const __mmask64 tail_mask = tail ? (~__mmask64{0} >> (64 - tail)) : ~__mmask64{0};
  for (size_t i = 0; i < n; ++i, ind += ks, y += c) {
    size_t j = 0;
    for (; j + 64 <= c; j += 64) {
      __m512i m = _mm512_loadu_si512(ind[0] + j);
      for (size_t t = 1; t < ks; ++t) m = _mm512_max_epu8(m, _mm512_loadu_si512(ind[t] + j));
      _mm512_storeu_si512(y + j, m);
    }
    if (j < c) {
      __m512i m = _mm512_maskz_loadu_epi8(tail_mask, ind[0] + j);
      for (size_t t = 1; t < ks; ++t)
        m = _mm512_max_epu8(m, _mm512_maskz_loadu_epi8(tail_mask, ind[t] + j));
      _mm512_mask_storeu_epi8(y + j, tail_mask, m);
    }
  }
}

}  // namespace npq
