// AVX2 depthwise convolution: 16-channel blocks, taps in pairs, exact without
// VNNI: inputs widened to int16 once per input row (in the transform), weights
// stored as int16, and vpmaddwd sums each pair of products exactly in int32
// (|255 * 128| * 2 < 2^31). No vpmaddubsw, so no int16 saturation.
//   transformed block (64 bytes): int16 pairs (x[tap 2q], x[tap 2q+1]) of channels 0..15
//   packed block: int32 wsum[16], then per (ky, q) the int16 pairs (w[2q], w[2q+1])
#include <immintrin.h>

#include <cstring>

#include "../ukernel.h"

namespace npq {
namespace {

constexpr size_t kCT = 16, kG = 2, kBlock = kCT * 4;  // 64 bytes per block

size_t blocks_of(size_t channels) { return (channels + kCT - 1) / kCT; }

// 16 input bytes of one tap (fewer for the last block, padded with zeros).
__m128i load_tap(const uint8_t* src, size_t n, uint8_t xz) {
  if (!src) return _mm_set1_epi8(static_cast<char>(xz));
  if (n >= kCT) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
  uint8_t buf[kCT] = {0};
  std::memcpy(buf, src, n);
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(buf));
}

}  // namespace

void qu8_dwconv_16c2__avx2_pack(size_t channels, size_t kh, size_t kw, const int8_t* w,
                                void* packed) {
  const size_t nq = (kw + kG - 1) / kG, taps = kh * kw;
  uint8_t* p = static_cast<uint8_t*>(packed);
  for (size_t b = 0; b < blocks_of(channels); ++b, p += kBlock + kh * nq * kBlock) {
    int32_t wsum[kCT] = {0};
    int16_t* q = reinterpret_cast<int16_t*>(p + kBlock);
    for (size_t ch = 0; ch < kCT && b * kCT + ch < channels; ++ch) {
      const int8_t* wc = w + (b * kCT + ch) * taps;
      for (size_t t = 0; t < taps; ++t) wsum[ch] += wc[t];
      for (size_t ky = 0; ky < kh; ++ky)
        for (size_t kx = 0; kx < kw; ++kx)
          q[(ky * nq + kx / kG) * kCT * kG + ch * kG + kx % kG] = wc[ky * kw + kx];
    }
    std::memcpy(p, wsum, sizeof(wsum));
  }
}

void qu8_dwconv_16c2__avx2_transform(const DwRowGeometry* g, const uint8_t* x_row, uint8_t xz,
                                     uint8_t* t) {
  const size_t c = g->channels, blocks = blocks_of(c);
  for (size_t ox = 0; ox < g->ow; ++ox)
    for (size_t q = 0; q < g->nq; ++q) {
      const uint8_t* src[kG];
      for (size_t i = 0; i < kG; ++i) {
        const size_t tap = q * kG + i;
        // Unsigned wrap-around: columns left of the row become huge and fail `< w`.
        const size_t col = ox * g->stride + tap * g->dil - g->pad_left;
        src[i] = x_row && tap < g->kw && col < g->w ? x_row + col * c : nullptr;
      }
      for (size_t b = 0; b < blocks; ++b, t += kBlock) {
        const size_t n = c - b * kCT;
        const __m128i v0 = load_tap(src[0] ? src[0] + b * kCT : nullptr, n, xz);
        const __m128i v1 = load_tap(src[1] ? src[1] + b * kCT : nullptr, n, xz);
        __m256i* out = reinterpret_cast<__m256i*>(t);
        _mm256_store_si256(out, _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(v0, v1)));
        _mm256_store_si256(out + 1, _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(v0, v1)));
      }
    }
}

void qu8_dwconv_16c2__avx2_row(size_t channels, size_t ow, size_t kh, size_t nq,
                               const uint8_t* const* t_rows, const void* packed, int32_t xz,
                               uint8_t* y, size_t y_stride, const RequantEpilogue* ep) {
  const size_t blocks = blocks_of(channels), pos_stride = blocks * kBlock;
  const size_t block_bytes = kBlock + kh * nq * kBlock;
  // Clamping v to [lo - zp, hi - zp] before rounding equals clamping
  // nearbyint(v) + zp to [lo, hi] (rounding is monotone and fixes integers).
  const __m256 lo = _mm256_set1_ps(static_cast<float>(ep->out_min - ep->out_zp));
  const __m256 hi = _mm256_set1_ps(static_cast<float>(ep->out_max - ep->out_zp));
  const __m256i zp16 = _mm256_set1_epi16(static_cast<int16_t>(ep->out_zp));
  const __m256i neg_xz = _mm256_set1_epi32(-xz);
  for (size_t b = 0; b < blocks; ++b) {
    const uint8_t* pb = static_cast<const uint8_t*>(packed) + b * block_bytes;
    const __m256i init0 =
        _mm256_mullo_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(pb)), neg_xz);
    const __m256i init1 =
        _mm256_mullo_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(pb + 32)), neg_xz);
    const __m256 bias0 = _mm256_loadu_ps(ep->bias_s + b * kCT);
    const __m256 bias1 = _mm256_loadu_ps(ep->bias_s + b * kCT + 8);
    const __m256 mult0 = _mm256_loadu_ps(ep->mult + b * kCT);
    const __m256 mult1 = _mm256_loadu_ps(ep->mult + b * kCT + 8);
    const size_t n = channels - b * kCT < kCT ? channels - b * kCT : kCT;
    const uint8_t* wq = pb + kBlock;
    uint8_t* yb = y + b * kCT;
    for (size_t ox = 0; ox < ow; ++ox, yb += y_stride) {
      __m256i a0 = init0, a1 = init1;
      const uint8_t* w = wq;
      for (size_t ky = 0; ky < kh; ++ky) {
        const uint8_t* t = t_rows[ky] + ox * nq * pos_stride + b * kBlock;
        for (size_t q = 0; q < nq; ++q, t += pos_stride, w += kBlock) {
          const __m256i* tv = reinterpret_cast<const __m256i*>(t);
          const __m256i* wv = reinterpret_cast<const __m256i*>(w);
          a0 = _mm256_add_epi32(
              a0, _mm256_madd_epi16(_mm256_load_si256(tv), _mm256_load_si256(wv)));
          a1 = _mm256_add_epi32(
              a1, _mm256_madd_epi16(_mm256_load_si256(tv + 1), _mm256_load_si256(wv + 1)));
        }
      }
      __m256 v0 = _mm256_mul_ps(_mm256_add_ps(_mm256_cvtepi32_ps(a0), bias0), mult0);
      __m256 v1 = _mm256_mul_ps(_mm256_add_ps(_mm256_cvtepi32_ps(a1), bias1), mult1);
      v0 = _mm256_min_ps(_mm256_max_ps(v0, lo), hi);
      v1 = _mm256_min_ps(_mm256_max_ps(v1, lo), hi);
      // packs works per 128-bit lane: [0-3, 8-11 | 4-7, 12-15]; restore the order.
      __m256i p = _mm256_packs_epi32(_mm256_cvtps_epi32(v0), _mm256_cvtps_epi32(v1));
      p = _mm256_adds_epi16(_mm256_permute4x64_epi64(p, 0xD8), zp16);
      const __m128i u =
          _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
      if (n == kCT) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(yb), u);
      } else {
        uint8_t buf[kCT];
        _mm_storeu_si128(reinterpret_cast<__m128i*>(buf), u);
        std::memcpy(yb, buf, n);
      }
    }
  }
}

}  // namespace npq
