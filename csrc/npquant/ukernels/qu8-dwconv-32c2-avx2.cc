// AVX2 depthwise convolution: 32-channel blocks, taps in pairs, exact without
// VNNI. vpmaddwd multiplies int16 pairs (x[tap a], x[tap b]) by int16 weight
// pairs and sums each pair exactly in int32 (|255 * -128| * 2 < 2^31); no
// vpmaddubsw, so no int16 saturation.
//
// The transform stores a tap pair as *bytes* (one per tap, like the input); the
// row kernel widens them to int16 with one and / shift each. Widening in the
// transform (the first version) doubled the transformed rows and cost as much
// as it saved; that version ran at 13 GMAC/s on 32 x 112 x 112 3x3, this one 27.
//
// Transformed block (64 bytes): unpacklo/unpackhi_epi16 of the two taps' 32
// channels, so each dword holds bytes (a[c], a[c+1], b[c], b[c+1]) for an even
// channel c: masking with 0x00FF gives the int16 pair (a[c], b[c]), shifting
// right by 8 gives (a[c+1], b[c+1]). The unpacks work within 128-bit lanes, so
// accumulator m holds channels acc_channel(m, 0..7); packed weights and weight
// sums follow that order, and one in-lane byte shuffle after the epilogue's
// packs restores the natural order.
// Packed block: int32 wsum[32], then per (ky, q) 32 int16 pairs (w[2q], w[2q+1]),
// 128 bytes each (odd kw: see kPairedMark).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "../ukernel.h"

namespace npq {
namespace {

// The row kernel's helpers must inline (GCC 12 otherwise calls tap_pair<2>).
#define NPQ_INLINE inline __attribute__((always_inline))

constexpr size_t kCT = 32, kG = 2;
constexpr size_t kBlock = kCT * kG;  // transformed bytes per block and tap pair
constexpr size_t kWBlock = kCT * 4;  // packed bytes per block and tap pair (int16 pairs)

// Channel (within a block) of dword j of accumulator m (see the top).
size_t acc_channel(size_t m, size_t j) { return (m / 2) * 8 + m % 2 + (j / 4) * 16 + (j % 4) * 2; }

// Odd kernel rows end in a lone tap. Its group is stored as (x, x), and the row
// kernel blends the lone taps of rows 2i and 2i+1 into one pair (x[2i], x[2i+1]),
// so a 3x3 kernel takes 5 vpmaddwd per 8 channels instead of 6. The packed
// layout says so with a mark no int8 weight can take, in the group it frees.
constexpr int16_t kPairedMark = 0x7FFF;
bool paired_rows(size_t kh, size_t kw) { return kh >= 2 && kw % 2 == 1; }

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
  _mm256_store_si256(out, _mm256_unpacklo_epi16(v0, v1));
  _mm256_store_si256(out + 1, _mm256_unpackhi_epi16(v0, v1));
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
        for (size_t i = 0; i < n; ++i, p += step, o += t_step)
          store_pair(load32(p), load32(p + tap), o);
      } else {  // a lone last tap is stored twice (see the pack)
        for (size_t i = 0; i < n; ++i, p += step, o += t_step) {
          const __m256i v = load32(p);
          store_pair(v, v, o);
        }
      }
    }
    if (full < blocks)  // the partial last block
      for (size_t i = 0; i < n; ++i) {
        const uint8_t* p = s0 + i * step + full * kCT;
        transform_pair(p, two ? p + tap : p, c - full * kCT, 1, pad,
                       tq + i * t_step + full * kBlock);
      }
  }
}

// acc += the pair sums of x * w. The empty asm pins the running sum: GCC
// otherwise reassociates the whole kernel's adds into a tree and spills most
// products to the stack (seen in objdump).
NPQ_INLINE __m256i acc_add(__m256i acc, __m256i x, __m256i w) {
  acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, w));
  asm("" : "+x"(acc));
  return acc;
}

// a += one tap pair of one output column, given as its two 32-byte halves
// (byte layout above): the and / shift widen even / odd channels to int16 pairs.
NPQ_INLINE void tap_pair(__m256i* a, __m256i l0, __m256i l1, const __m256i* w) {
  const __m256i lo = _mm256_set1_epi16(0xFF);
  a[0] = acc_add(a[0], _mm256_and_si256(l0, lo), w[0]);
  a[1] = acc_add(a[1], _mm256_srli_epi16(l0, 8), w[1]);
  a[2] = acc_add(a[2], _mm256_and_si256(l1, lo), w[2]);
  a[3] = acc_add(a[3], _mm256_srli_epi16(l1, 8), w[3]);
}

// One group of packed weights (w) for `Cols` output columns `step` bytes apart
// in the transformed rows. t: the tap pair; with tb (the odd taps of two rows,
// each stored twice), the pair is word-blended from both rows: (row a, row b).
template <int Cols>
NPQ_INLINE void group(__m256i* a, const uint8_t* t, const uint8_t* tb, size_t step,
                      const uint8_t* w) {
  __m256i wv[4];
  for (size_t m = 0; m < 4; ++m) {
    wv[m] = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + 32 * m));
    if (Cols == 2) asm("" : "+x"(wv[m]));  // one load for both columns (GCC would load twice)
  }
  for (size_t c = 0; c < Cols; ++c) {
    __m256i l0 = load32(t + c * step), l1 = load32(t + c * step + 32);
    if (tb) {
      l0 = _mm256_blend_epi16(l0, load32(tb + c * step), 0xAA);
      l1 = _mm256_blend_epi16(l1, load32(tb + c * step + 32), 0xAA);
    }
    tap_pair(a + 4 * c, l0, l1, wv);
  }
}

// Accumulates `Cols` output columns over kh rows and nq pairs (compile-time
// KH/NQ for the common kernels, 0 = runtime). PairOdd (odd kw): the last group
// of each row holds one real tap, so rows are taken two at a time there.
template <int KH, int NQ, bool PairOdd, int Cols>
NPQ_INLINE void accumulate(__m256i* a, const uint8_t* const* rows, size_t off, size_t step,
                           size_t pos_stride, size_t kh, size_t nq, const uint8_t* w) {
  const size_t h = KH ? KH : kh, n = NQ ? NQ : nq, full = PairOdd ? n - 1 : n;
  for (size_t ky = 0; ky < h; ++ky)
    for (size_t q = 0; q < full; ++q)
      group<Cols>(a, rows[ky] + off + q * pos_stride, nullptr, step, w + (ky * n + q) * kWBlock);
  if (PairOdd) {
    const size_t last = off + (n - 1) * pos_stride;
    for (size_t ky = 0; ky < h; ky += 2)
      group<Cols>(a, rows[ky] + last, ky + 1 < h ? rows[ky + 1] + last : nullptr, step,
                  w + (ky * n + n - 1) * kWBlock);
  }
}

struct Requant {
  __m256 bias[4], mult[4], hi;
  __m256i zp16, lo8, order;

  // 4 accumulators (acc_channel order) -> 32 output bytes in natural order.
  // q = clamp(nearbyint(v) + zp, lo, hi) with one float op: v is capped at
  // hi - zp first (rounding is monotone and fixes integers, so this caps the
  // result at hi and keeps cvtps2dq from overflowing upwards). Below, cvtps2dq's
  // INT_MIN for v < -2^31 and the saturating packssdw/paddsw/packuswb only ever
  // saturate values whose result is < 0 <= lo, and the byte max applies lo.
  NPQ_INLINE __m256i operator()(const __m256i* a) const {
    __m256i q[4];
    for (size_t m = 0; m < 4; ++m) {
      const __m256 v = _mm256_mul_ps(_mm256_add_ps(_mm256_cvtepi32_ps(a[m]), bias[m]), mult[m]);
      q[m] = _mm256_cvtps_epi32(_mm256_min_ps(v, hi));
    }
    // packs and packus work per lane; one in-lane byte shuffle restores the order.
    const __m256i p01 = _mm256_adds_epi16(_mm256_packs_epi32(q[0], q[1]), zp16);
    const __m256i p23 = _mm256_adds_epi16(_mm256_packs_epi32(q[2], q[3]), zp16);
    return _mm256_max_epu8(_mm256_shuffle_epi8(_mm256_packus_epi16(p01, p23), order), lo8);
  }
};

void store32(uint8_t* y, __m256i v, size_t n) {
  if (n >= kCT) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), v);
    return;
  }
  alignas(32) uint8_t buf[kCT];
  _mm256_store_si256(reinterpret_cast<__m256i*>(buf), v);
  std::memcpy(y, buf, n);
}

template <int KH, int NQ, bool PairOdd>
void row_impl(size_t channels, size_t ow, size_t kh, size_t nq, const uint8_t* const* rows,
              const uint8_t* packed, int32_t xz, uint8_t* y, size_t y_stride,
              const RequantEpilogue* ep) {
  const size_t blocks = blocks_of(channels), pos_stride = blocks * kBlock;
  const size_t t_step = nq * pos_stride, block_bytes = kWBlock + kh * nq * kWBlock;
  Requant rq;
  rq.hi = _mm256_set1_ps(static_cast<float>(ep->out_max - ep->out_zp));
  rq.zp16 = _mm256_set1_epi16(static_cast<int16_t>(ep->out_zp));
  rq.lo8 = _mm256_set1_epi8(static_cast<char>(ep->out_min));
  // After the packs, lane byte i holds channel acc_channel(2 * (i / 8) + (i / 4) % 2, i % 4)
  // of the lane: invert that.
  alignas(32) uint8_t order[32];
  for (size_t i = 0; i < 16; ++i) {
    const size_t ch = acc_channel(2 * (i / 8) + (i / 4) % 2, i % 4);
    order[ch] = order[16 + ch] = static_cast<uint8_t>(i);
  }
  rq.order = _mm256_load_si256(reinterpret_cast<const __m256i*>(order));
  const __m256i neg_xz = _mm256_set1_epi32(-xz);
  for (size_t b = 0; b < blocks; ++b) {
    const uint8_t* pb = packed + b * block_bytes;
    __m256i init[4];
    for (size_t m = 0; m < 4; ++m) {
      init[m] = _mm256_mullo_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(pb + 32 * m)),
                                   neg_xz);
      alignas(32) float bias[8], mult[8];
      for (size_t j = 0; j < 8; ++j) {
        bias[j] = ep->bias_s[b * kCT + acc_channel(m, j)];
        mult[j] = ep->mult[b * kCT + acc_channel(m, j)];
      }
      rq.bias[m] = _mm256_load_ps(bias);
      rq.mult[m] = _mm256_load_ps(mult);
    }
    const uint8_t* wq = pb + kWBlock;
    const size_t n = std::min(kCT, channels - b * kCT), off = b * kBlock;
    uint8_t* yb = y + b * kCT;
    size_t ox = 0;
    // Two output columns per step: each weight load serves both.
    for (; ox + 1 < ow; ox += 2, yb += 2 * y_stride) {
      __m256i a[8] = {init[0], init[1], init[2], init[3], init[0], init[1], init[2], init[3]};
      accumulate<KH, NQ, PairOdd, 2>(a, rows, ox * t_step + off, t_step, pos_stride, kh, nq, wq);
      store32(yb, rq(a), n);
      store32(yb + y_stride, rq(a + 4), n);
    }
    if (ox < ow) {
      __m256i a[4] = {init[0], init[1], init[2], init[3]};
      accumulate<KH, NQ, PairOdd, 1>(a, rows, ox * t_step + off, t_step, pos_stride, kh, nq, wq);
      store32(yb, rq(a), n);
    }
  }
}

}  // namespace

void qu8_dwconv_32c2__avx2_pack(size_t channels, size_t kh, size_t kw, const int8_t* w,
                                void* packed) {
  const size_t nq = (kw + kG - 1) / kG, taps = kh * kw;
  const bool pair_odd = paired_rows(kh, kw);
  uint8_t* p = static_cast<uint8_t*>(packed);
  for (size_t b = 0; b < blocks_of(channels); ++b, p += kWBlock + kh * nq * kWBlock) {
    int32_t wsum[kCT];
    int16_t* q = reinterpret_cast<int16_t*>(p + kWBlock);
    for (size_t m = 0; m < 4; ++m)
      for (size_t j = 0; j < 8; ++j) {
        // d: dword of the block's accumulators, ch: its channel
        const size_t ch = b * kCT + acc_channel(m, j), d = m * 8 + j;
        const int8_t* wc = w + ch * taps;
        auto wt = [&](size_t ky, size_t kx) -> int16_t {
          return ch < channels && ky < kh && kx < kw ? wc[ky * kw + kx] : 0;
        };
        int32_t s = 0;
        for (size_t t = 0; ch < channels && t < taps; ++t) s += wc[t];
        wsum[d] = s;
        for (size_t ky = 0; ky < kh; ++ky)
          for (size_t g = 0; g < nq; ++g) {
            int16_t* pair = q + ((ky * nq + g) * kCT + d) * kG;
            if (pair_odd && g == nq - 1) {  // the last tap of rows ky and ky + 1
              pair[0] = ky % 2 ? 0 : wt(ky, kw - 1);
              pair[1] = ky % 2 ? 0 : wt(ky + 1, kw - 1);
            } else {
              pair[0] = wt(ky, 2 * g);
              pair[1] = wt(ky, 2 * g + 1);
            }
          }
      }
    std::memcpy(p, wsum, sizeof(wsum));
    // The row kernel cannot see kw: mark the layout in the (unused) group of row 1.
    if (pair_odd) q[(1 * nq + nq - 1) * kCT * kG] = kPairedMark;
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
      transform_span(x_row + (ox * stride - pad_left) * c, ox_hi - ox_lo, stride * c, dil * c, kw,
                     nq, c, blocks, pad, to, pos_stride);
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
      const bool odd = q * kG + 1 == kw;  // a lone last tap is stored twice
      transform_pair(src[0], odd ? src[0] : src[1], c, blocks, pad, to);
    }
  }
}

void qu8_dwconv_32c2__avx2_row(size_t channels, size_t ow, size_t kh, size_t nq,
                               const uint8_t* const* t_rows, const void* packed, int32_t xz,
                               uint8_t* y, size_t y_stride, const RequantEpilogue* ep) {
  const uint8_t* p = static_cast<const uint8_t*>(packed);
  int16_t mark = 0;
  if (kh >= 2) std::memcpy(&mark, p + kWBlock + (1 * nq + nq - 1) * kWBlock, sizeof(mark));
  const bool pair_odd = mark == kPairedMark;
  // The common kernels (3x3, 5x5) get their loops unrolled.
  auto row = pair_odd && kh == 3 && nq == 2   ? row_impl<3, 2, true>
             : pair_odd && kh == 5 && nq == 3 ? row_impl<5, 3, true>
             : pair_odd                       ? row_impl<0, 0, true>
                                              : row_impl<0, 0, false>;
  row(channels, ow, kh, nq, t_rows, p, xz, y, y_stride, ep);
}

}  // namespace npq
