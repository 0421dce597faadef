// AVX2 depthwise convolution: 32-channel blocks, taps in pairs, exact without
// VNNI. vpmaddwd multiplies int16 pairs (x[tap a], x[tap b]) by int16 weight
// pairs and sums each pair exactly in int32 (|255 * -128| * 2 < 2^31); no
// vpmaddubsw, so no int16 saturation.
//
// Direct (tb 0 in ukernels.inc): the "transform" only copies the input row
// between zero-point padding, after a 64-byte header with the geometry the row
// kernel needs (column and tap steps, kw). The row kernel forms each tap pair in
// registers: unpacklo/hi_epi16 of the two taps' 32 bytes give dwords (a[c],
// a[c+1], b[c], b[c+1]) for even channels c; masking with 0x00FF gives the int16
// pair (a[c], b[c]), shifting right by 8 gives (a[c+1], b[c+1]). The unpacks work
// within 128-bit lanes, so accumulator m holds channels acc_channel(m, 0..7);
// packed weights and weight sums follow that order, and one in-lane byte shuffle
// after the epilogue's packs restores the natural order.
//
// The previous version stored every output column's tap pairs in transformed
// rows (2 unpacks and 2 stores per pair and block, a byte copy for a partial
// block) for the row kernel to load back. Against it, same run, N=8, 1 thread,
// best iteration (GMAC/s): 96ch 112x112 3x3 s2 15.3 vs 11.6, 72ch 56x56 5x5 s2
// 25 vs 11.5, 120ch 28x28 5x5 s1 35 vs 22, 58ch 28x28 3x3 s1 22.8 vs 10.3,
// 144ch 56x56 3x3 s1 21 vs 19.3, 384ch 14x14 3x3 s1 27.3 vs 24.4.
//
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
constexpr size_t kWBlock = kCT * 4;  // packed bytes per block and tap pair (int16 pairs)

// Channel (within a block) of dword j of accumulator m (see the top).
size_t acc_channel(size_t m, size_t j) { return (m / 2) * 8 + m % 2 + (j / 4) * 16 + (j % 4) * 2; }

// Odd kernel rows end in a lone tap. The row kernel pairs the lone taps of rows
// 2i and 2i+1 as (x[2i], x[2i+1]), so a 3x3 kernel takes 5 vpmaddwd per 8
// channels instead of 6. The packed
// layout says so with a mark no int8 weight can take, in the group it frees.
constexpr int16_t kPairedMark = 0x7FFF;
bool paired_rows(size_t kh, size_t kw) { return kh >= 2 && kw % 2 == 1; }

size_t blocks_of(size_t channels) { return (channels + kCT - 1) / kCT; }

__m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// The padded row's header: byte steps between output columns and between
// taps, and kw.
struct RowHeader {
  uint64_t col_step, tap_step, kw, pad;
};
constexpr size_t kHeader = 64;

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

// One group of packed weights (w) for `Cols` output columns `step` bytes apart:
// the pair of taps at p and q (q: the second tap, or the lone tap of the next
// kernel row, or p again).
template <int Cols>
NPQ_INLINE void group(__m256i* a, const uint8_t* p, const uint8_t* q, size_t step,
                      const uint8_t* w) {
  __m256i wv[4];
  for (size_t m = 0; m < 4; ++m) {
    wv[m] = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + 32 * m));
    if (Cols == 2) asm("" : "+x"(wv[m]));  // one load for both columns (GCC would load twice)
  }
  for (size_t c = 0; c < Cols; ++c) {
    const __m256i v0 = load32(p + c * step), v1 = load32(q + c * step);
    tap_pair(a + 4 * c, _mm256_unpacklo_epi16(v0, v1), _mm256_unpackhi_epi16(v0, v1), wv);
  }
}

// Accumulates `Cols` output columns over kh rows and nq pairs (compile-time
// KH/NQ for the common kernels, 0 = runtime). PairOdd (odd kw): the last group
// of each row holds one real tap, so rows are taken two at a time there.
// off: the columns' first tap in each row; tap: bytes between taps.
template <int KH, int NQ, bool PairOdd, int Cols>
NPQ_INLINE void accumulate(__m256i* a, const uint8_t* const* rows, size_t off, size_t step,
                           size_t tap, size_t kh, size_t nq, size_t kw, const uint8_t* w) {
  const size_t h = KH ? KH : kh, n = NQ ? NQ : nq, full = PairOdd ? n - 1 : n;
  for (size_t ky = 0; ky < h; ++ky)
    for (size_t q = 0; q < full; ++q) {
      const uint8_t* p = rows[ky] + off + 2 * q * tap;
      group<Cols>(a, p, 2 * q + 1 < kw ? p + tap : p, step, w + (ky * n + q) * kWBlock);
    }
  if (PairOdd) {
    const size_t last = off + (n - 1) * 2 * tap;
    for (size_t ky = 0; ky < h; ky += 2) {
      const uint8_t* p = rows[ky] + last;
      group<Cols>(a, p, ky + 1 < h ? rows[ky + 1] + last : p, step, w + (ky * n + n - 1) * kWBlock);
    }
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
  RowHeader hdr;
  std::memcpy(&hdr, rows[0], sizeof(hdr));
  const size_t blocks = blocks_of(channels), block_bytes = kWBlock + kh * nq * kWBlock;
  const size_t t_step = hdr.col_step, tap = hdr.tap_step, kw = hdr.kw;
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
    const size_t n = std::min(kCT, channels - b * kCT), off = kHeader + b * kCT;
    uint8_t* yb = y + b * kCT;
    size_t ox = 0;
    // Two output columns per step: each weight load serves both.
    for (; ox + 1 < ow; ox += 2, yb += 2 * y_stride) {
      __m256i a[8] = {init[0], init[1], init[2], init[3], init[0], init[1], init[2], init[3]};
      accumulate<KH, NQ, PairOdd, 2>(a, rows, ox * t_step + off, t_step, tap, kh, nq, kw, wq);
      store32(yb, rq(a), n);
      store32(yb + y_stride, rq(a + 4), n);
    }
    if (ox < ow) {
      __m256i a[4] = {init[0], init[1], init[2], init[3]};
      accumulate<KH, NQ, PairOdd, 1>(a, rows, ox * t_step + off, t_step, tap, kh, nq, kw, wq);
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
  const size_t c = g->channels, pw = dw_padded_width(*g);
  const RowHeader hdr{g->stride * c, g->dil * c, g->kw, 0};
  std::memcpy(t, &hdr, sizeof(hdr));
  uint8_t* d = t + kHeader;
  const size_t left = x_row ? std::min(g->pad_left, pw) : pw;
  const size_t n = x_row ? std::min(g->w, pw - left) : 0;
  std::memset(d, xz, left * c);
  if (n) std::memcpy(d + left * c, x_row, n * c);
  std::memset(d + (left + n) * c, xz, (pw - left - n) * c);
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
