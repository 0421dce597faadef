// AVX2 depthwise convolution: 32-channel blocks, taps in pairs, exact without
// VNNI. vpmaddwd multiplies int16 pairs (x[tap 2q], x[tap 2q+1]) by int16 weight
// pairs and sums each pair exactly in int32 (|255 * -128| * 2 < 2^31); no
// vpmaddubsw, so no int16 saturation.
//
// The transform stores a tap pair as interleaved *bytes* (one per tap, like the
// input); the row kernel widens them to int16 by unpacking with zero. Widening
// in the transform (the first version) doubled the transformed rows, and the
// three a 3x3 row reads then streamed from L2 (13 GMAC/s on 32 x 112 x 112).
//
// Transformed block (64 bytes): unpacklo/unpackhi_epi8 of the two taps' 32
// channels, i.e. byte pairs of channels 0-7, 16-23, 8-15, 24-31 (the unpacks work
// within 128-bit lanes). The row kernel unpacks each 32-byte half with zero, again
// within lanes, so accumulator m holds channels kAcc[m] + {0..3, 16..19}; packed
// weights and weight sums follow that order, and the epilogue's per-lane packs
// land back in natural order with no permute.
// Packed block: int32 wsum[32], then per (ky, q) 32 int16 pairs (w[2q], w[2q+1])
// (w[2q+1] = 0 past the kernel row), 128 bytes each.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "../ukernel.h"

namespace npq {
namespace {

constexpr size_t kCT = 32, kG = 2;
constexpr size_t kBlock = kCT * kG;   // transformed bytes per block and tap pair
constexpr size_t kWBlock = kCT * 4;   // packed bytes per block and tap pair (int16 pairs)
constexpr size_t kAcc[4] = {0, 4, 8, 12};  // accumulator m: channels kAcc[m] + {0..3, 16..19}

size_t blocks_of(size_t channels) { return (channels + kCT - 1) / kCT; }

__m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// The n (1..32) bytes at p, never reading past p + n; the bytes after them are
// don't-care (they meet zero weights and their outputs are not stored).
__m256i load_part(const uint8_t* p, size_t n) {
  if (n >= kCT) return load32(p);
  if (n == 16) return _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  alignas(32) uint8_t buf[kCT] = {0};
  std::memcpy(buf, p, n);
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(buf));
}

void store_pair(__m256i v0, __m256i v1, uint8_t* t) {
  __m256i* out = reinterpret_cast<__m256i*>(t);
  _mm256_store_si256(out, _mm256_unpacklo_epi8(v0, v1));
  _mm256_store_si256(out + 1, _mm256_unpackhi_epi8(v0, v1));
}

// One output column's tap pair q for every block; null sources read as the
// zero point (padding, or the missing second tap of an odd kernel row).
void transform_pair(const uint8_t* s0, const uint8_t* s1, size_t c, size_t blocks, __m256i pad,
                    uint8_t* t) {
  for (size_t b = 0; b < blocks; ++b, t += kBlock) {
    const size_t n = c - b * kCT;
    store_pair(s0 ? load_part(s0 + b * kCT, n) : pad, s1 ? load_part(s1 + b * kCT, n) : pad, t);
  }
}

// Columns whose taps all lie inside the row: no checks, whole-block loads, and
// the columns innermost (for few channels the block loop is one iteration).
// x: tap 0 of the first column; columns `step` bytes apart, taps `tap` bytes.
void transform_span(const uint8_t* x, size_t n, size_t step, size_t tap, size_t kw, size_t nq,
                    size_t c, size_t blocks, __m256i pad, uint8_t* t, size_t pos_stride) {
  const size_t full = c / kCT, t_step = nq * pos_stride;
  for (size_t q = 0; q < nq; ++q) {
    const uint8_t* s0 = x + 2 * q * tap;
    const bool two = 2 * q + 1 < kw;
    uint8_t* tq = t + q * pos_stride;
    for (size_t b = 0; b < full; ++b) {
      const uint8_t* p = s0 + b * kCT;
      uint8_t* o = tq + b * kBlock;
      if (two) {
        for (size_t i = 0; i < n; ++i, p += step, o += t_step) store_pair(load32(p), load32(p + tap), o);
      } else {
        for (size_t i = 0; i < n; ++i, p += step, o += t_step) store_pair(load32(p), pad, o);
      }
    }
    if (full < blocks)  // the partial last block
      for (size_t i = 0; i < n; ++i) {
        const uint8_t* p = s0 + i * step + full * kCT;
        transform_pair(p, two ? p + tap : nullptr, c - full * kCT, 1, pad,
                       tq + i * t_step + full * kBlock);
      }
  }
}

// acc += the pair sums of x * w. The empty asm pins the running sum: GCC
// otherwise reassociates the whole kernel's adds into a tree and spills most
// products to the stack (seen in objdump).
__m256i acc_add(__m256i acc, __m256i x, __m256i w) {
  acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, w));
  asm("" : "+x"(acc));
  return acc;
}

// a += the products of one tap pair of one output column: two 32-byte loads,
// widened by unpacking with zero (in-lane: accumulator m gets channels
// kAcc[m] + 0..3 and + 16..19).
void tap_pair1(__m256i* a, const uint8_t* t, const __m256i* w) {
  const __m256i z = _mm256_setzero_si256();
  const __m256i l0 = load32(t), l1 = load32(t + 32);
  a[0] = acc_add(a[0], _mm256_unpacklo_epi8(l0, z), w[0]);
  a[1] = acc_add(a[1], _mm256_unpackhi_epi8(l0, z), w[1]);
  a[2] = acc_add(a[2], _mm256_unpacklo_epi8(l1, z), w[2]);
  a[3] = acc_add(a[3], _mm256_unpackhi_epi8(l1, z), w[3]);
}

template <int Cols>
void tap_pair(__m256i* a, const uint8_t* t, size_t step, const uint8_t* w) {
  __m256i wv[4];
  for (size_t m = 0; m < 4; ++m) {
    wv[m] = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + 32 * m));
    if (Cols == 2) asm("" : "+x"(wv[m]));  // one load for both columns (GCC would load twice)
  }
  tap_pair1(a, t, wv);
  if (Cols == 2) tap_pair1(a + 4, t + step, wv);
}

// Accumulates `Cols` output columns over kh rows and nq pairs (compile-time
// KH/NQ for the common kernels, 0 = runtime).
template <int KH, int NQ, int Cols>
void accumulate(__m256i* a, const uint8_t* const* rows, size_t off, size_t step, size_t pos_stride,
                size_t kh, size_t nq, const uint8_t* w) {
  const size_t h = KH ? KH : kh, n = NQ ? NQ : nq;
  for (size_t ky = 0; ky < h; ++ky) {
    const uint8_t* t = rows[ky] + off;
    for (size_t q = 0; q < n; ++q, t += pos_stride, w += kWBlock) tap_pair<Cols>(a, t, step, w);
  }
}

struct Requant {
  __m256 bias[4], mult[4], hi;
  __m256i zp16, lo8;

  // 8 accumulators (quarter order) -> 32 output bytes in natural order.
  // q = clamp(nearbyint(v) + zp, lo, hi) with one float op: v is capped at
  // hi - zp first (rounding is monotone and fixes integers, so this caps the
  // result at hi and keeps cvtps2dq from overflowing upwards). Below, cvtps2dq's
  // INT_MIN for v < -2^31 and the saturating packssdw/paddsw/packuswb only ever
  // saturate values whose result is < 0 <= lo, and the byte max applies lo.
  __m256i operator()(const __m256i* a) const {
    __m256i q[4];
    for (size_t m = 0; m < 4; ++m) {
      const __m256 v = _mm256_mul_ps(_mm256_add_ps(_mm256_cvtepi32_ps(a[m]), bias[m]), mult[m]);
      q[m] = _mm256_cvtps_epi32(_mm256_min_ps(v, hi));
    }
    // packs and packus work per lane: [0-3, 4-7 | 16-19, 20-23], [8-11, 12-15 |
    // 24-27, 28-31], then [0-15 | 16-31]: the natural order.
    const __m256i p01 = _mm256_adds_epi16(_mm256_packs_epi32(q[0], q[1]), zp16);
    const __m256i p23 = _mm256_adds_epi16(_mm256_packs_epi32(q[2], q[3]), zp16);
    return _mm256_max_epu8(_mm256_packus_epi16(p01, p23), lo8);
  }
};

// The 8 floats of one accumulator's channels: p[0..3] and p[16..19].
__m256 halves(const float* p) { return _mm256_setr_m128(_mm_loadu_ps(p), _mm_loadu_ps(p + 16)); }

void store32(uint8_t* y, __m256i v, size_t n) {
  if (n >= kCT) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), v);
    return;
  }
  alignas(32) uint8_t buf[kCT];
  _mm256_store_si256(reinterpret_cast<__m256i*>(buf), v);
  std::memcpy(y, buf, n);
}

template <int KH, int NQ>
void row_impl(size_t channels, size_t ow, size_t kh, size_t nq, const uint8_t* const* rows,
              const uint8_t* packed, int32_t xz, uint8_t* y, size_t y_stride,
              const RequantEpilogue* ep) {
  const size_t blocks = blocks_of(channels), pos_stride = blocks * kBlock;
  const size_t t_step = nq * pos_stride, block_bytes = kWBlock + kh * nq * kWBlock;
  Requant rq;
  rq.hi = _mm256_set1_ps(static_cast<float>(ep->out_max - ep->out_zp));
  rq.zp16 = _mm256_set1_epi16(static_cast<int16_t>(ep->out_zp));
  rq.lo8 = _mm256_set1_epi8(static_cast<char>(ep->out_min));
  const __m256i neg_xz = _mm256_set1_epi32(-xz);
  for (size_t b = 0; b < blocks; ++b) {
    const uint8_t* pb = packed + b * block_bytes;
    __m256i init[4];
    for (size_t m = 0; m < 4; ++m) {
      init[m] = _mm256_mullo_epi32(
          _mm256_load_si256(reinterpret_cast<const __m256i*>(pb + 32 * m)), neg_xz);
      rq.bias[m] = halves(ep->bias_s + b * kCT + kAcc[m]);
      rq.mult[m] = halves(ep->mult + b * kCT + kAcc[m]);
    }
    const uint8_t* wq = pb + kWBlock;
    const size_t n = std::min(kCT, channels - b * kCT), off = b * kBlock;
    uint8_t* yb = y + b * kCT;
    size_t ox = 0;
    // Two output columns per step: each weight load serves both.
    for (; ox + 1 < ow; ox += 2, yb += 2 * y_stride) {
      __m256i a[8] = {init[0], init[1], init[2], init[3], init[0], init[1], init[2], init[3]};
      accumulate<KH, NQ, 2>(a, rows, ox * t_step + off, t_step, pos_stride, kh, nq, wq);
      store32(yb, rq(a), n);
      store32(yb + y_stride, rq(a + 4), n);
    }
    if (ox < ow) {
      __m256i a[4] = {init[0], init[1], init[2], init[3]};
      accumulate<KH, NQ, 1>(a, rows, ox * t_step + off, t_step, pos_stride, kh, nq, wq);
      store32(yb, rq(a), n);
    }
  }
}

}  // namespace

void qu8_dwconv_32c2__avx2_pack(size_t channels, size_t kh, size_t kw, const int8_t* w,
                                void* packed) {
  const size_t nq = (kw + kG - 1) / kG, taps = kh * kw;
  uint8_t* p = static_cast<uint8_t*>(packed);
  for (size_t b = 0; b < blocks_of(channels); ++b, p += kWBlock + kh * nq * kWBlock) {
    int32_t wsum[kCT];
    int16_t* q = reinterpret_cast<int16_t*>(p + kWBlock);
    for (size_t m = 0; m < 4; ++m)
      for (size_t j = 0; j < 8; ++j) {
        // d: dword of the block's accumulators, ch: its channel
        const size_t ch = b * kCT + kAcc[m] + (j < 4 ? j : 12 + j), d = m * 8 + j;
        const int8_t* wc = w + ch * taps;
        int32_t s = 0;
        for (size_t t = 0; ch < channels && t < taps; ++t) s += wc[t];
        wsum[d] = s;
        for (size_t ky = 0; ky < kh; ++ky)
          for (size_t i = 0; i < nq * kG; ++i)
            q[((ky * nq + i / kG) * kCT + d) * kG + i % kG] =
                ch < channels && i < kw ? wc[ky * kw + i] : 0;
      }
    std::memcpy(p, wsum, sizeof(wsum));
  }
}

void qu8_dwconv_32c2__avx2_transform(const DwRowGeometry* g, const uint8_t* x_row, uint8_t xz,
                                     uint8_t* t) {
  const size_t c = g->channels, w = g->w, ow = g->ow, nq = g->nq, kw = g->kw;
  const size_t stride = g->stride, dil = g->dil, pad_left = g->pad_left;
  const size_t blocks = blocks_of(c), pos_stride = blocks * kBlock;
  const __m256i pad = _mm256_set1_epi8(static_cast<char>(xz));
  // Output columns whose taps all lie inside the row: [ox_lo, ox_hi).
  const size_t span = (kw - 1) * dil;
  size_t ox_lo = std::min(ow, (pad_left + stride - 1) / stride);
  size_t ox_hi = w + pad_left > span ? std::min(ow, (w + pad_left - span - 1) / stride + 1) : 0;
  if (!x_row || ox_hi < ox_lo) ox_lo = ox_hi = 0;
  for (size_t ox = 0; ox < ow; ++ox) {
    uint8_t* to = t + ox * nq * pos_stride;
    if (ox == ox_lo && ox_hi > ox_lo) {
      transform_span(x_row + (ox * stride - pad_left) * c, ox_hi - ox_lo, stride * c, dil * c,
                     kw, nq, c, blocks, pad, to, pos_stride);
      ox = ox_hi - 1;
      continue;
    }
    for (size_t q = 0; q < nq; ++q, to += pos_stride) {
      const uint8_t* src[kG] = {nullptr, nullptr};
      for (size_t i = 0; i < kG && q * kG + i < kw; ++i) {
        // Unsigned wrap-around: columns left of the row become huge and fail `< w`.
        const size_t col = ox * stride + (q * kG + i) * dil - pad_left;
        if (x_row && col < w) src[i] = x_row + col * c;
      }
      transform_pair(src[0], src[1], c, blocks, pad, to);
    }
  }
}

void qu8_dwconv_32c2__avx2_row(size_t channels, size_t ow, size_t kh, size_t nq,
                               const uint8_t* const* t_rows, const void* packed, int32_t xz,
                               uint8_t* y, size_t y_stride, const RequantEpilogue* ep) {
  const uint8_t* p = static_cast<const uint8_t*>(packed);
  // The common kernels get their loops unrolled.
  auto row = kh == 3 && nq == 2   ? row_impl<3, 2>
             : kh == 5 && nq == 3 ? row_impl<5, 3>
                                  : row_impl<0, 0>;
  row(channels, ow, kh, nq, t_rows, p, xz, y, y_stride, ep);
}

}  // namespace npq
