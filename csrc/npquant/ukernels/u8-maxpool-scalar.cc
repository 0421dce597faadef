// Quantized max pooling, the baseline kernel: for each output pixel, the bytewise max
// over its ks input rows (ukernel.h: u8_maxpool_fn). Every target has 16-byte vectors
// (SSE2 on x86-64, NEON on AArch64), so 16-channel chunks stay in a register over all
// taps, the last chunk overlapping the one before (max is idempotent); below 16
// channels, or on another target, a byte loop. Max is exact on codes (scale and zero
// point are shared by input and output), so every kernel of the family gives these bytes.
#include "../ukernel.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#endif

namespace npq {

namespace {

#if defined(__SSE2__)
using Vec = __m128i;
inline Vec load(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline Vec vmax(Vec a, Vec b) { return _mm_max_epu8(a, b); }
inline void store(uint8_t* p, Vec v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); }
constexpr bool kVector = true;
#elif defined(__ARM_NEON)
using Vec = uint8x16_t;
inline Vec load(const uint8_t* p) { return vld1q_u8(p); }
inline Vec vmax(Vec a, Vec b) { return vmaxq_u8(a, b); }
inline void store(uint8_t* p, Vec v) { vst1q_u8(p, v); }
constexpr bool kVector = true;
#else
constexpr bool kVector = false;
#endif

}  // namespace

void u8_maxpool__scalar(size_t n, size_t ks, const uint8_t* const* ind, size_t c, uint8_t* y) {
  for (size_t i = 0; i < n; ++i, ind += ks, y += c) {
#if defined(__SSE2__) || defined(__ARM_NEON)
    if (kVector && c >= 16) {
      for (size_t j0 = 0; j0 < c; j0 += 16) {
        const size_t j = j0 + 16 <= c ? j0 : c - 16;
        Vec m = load(ind[0] + j);
        for (size_t t = 1; t < ks; ++t) m = vmax(m, load(ind[t] + j));
        store(y + j, m);
      }
      continue;
    }
#endif
    for (size_t j = 0; j < c; ++j) {
      uint8_t m = ind[0][j];
      for (size_t t = 1; t < ks; ++t) m = ind[t][j] > m ? ind[t][j] : m;
      y[j] = m;
    }
  }
}

}  // namespace npq
