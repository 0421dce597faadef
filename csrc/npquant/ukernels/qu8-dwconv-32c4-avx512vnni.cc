// AVX-512 VNNI depthwise convolution: 32-channel blocks, taps in groups of 4,
// one vpdpbusd per 16 channels and 4 taps (u8 x s8 summed exactly in int32).
//
// The transform interleaves 4 taps of 32 channels with two rounds of byte/word
// unpacks (which work within 128-bit lanes), and stores the four results as is:
// the 128-byte block layout of avx512-dw32.h, which also holds the packing, the
// accumulators' lane order and the epilogue this kernel shares with the VBMI one.
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own
// `_mm512_undefined_*` self-initialization (GCC bug 105593); nothing here is.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "../ukernel.h"
#include "avx512-dw32.h"

namespace npq {
namespace {

using namespace dw32;

// acc += packed-weights . transformed taps, for one block of one output pixel.
template <int KH, int NQ>
struct Taps {
  __m512i w[KH * NQ * 2];
  void load(const uint8_t* wq, size_t, size_t) {
    for (int i = 0; i < KH * NQ * 2; ++i)
      w[i] = _mm512_load_si512(reinterpret_cast<const __m512i*>(wq + i * 64));
  }
  void run(const uint8_t* const* rows, size_t off, size_t pos_stride, size_t, size_t, __m512i& a0,
           __m512i& a1) const {
#pragma GCC unroll 8
    for (int ky = 0; ky < KH; ++ky) {
      const uint8_t* t = rows[ky] + off;
#pragma GCC unroll 4
      for (int q = 0; q < NQ; ++q, t += pos_stride) {
        a0 = _mm512_dpbusd_epi32(a0, _mm512_load_si512(reinterpret_cast<const __m512i*>(t)),
                                 w[(ky * NQ + q) * 2]);
        a1 = _mm512_dpbusd_epi32(a1, _mm512_load_si512(reinterpret_cast<const __m512i*>(t + 64)),
                                 w[(ky * NQ + q) * 2 + 1]);
      }
    }
  }
};

// Any kernel size: weights read from the packed block each time (L1 hits).
template <>
struct Taps<0, 0> {
  const uint8_t* wq;
  void load(const uint8_t* p, size_t, size_t) { wq = p; }
  void run(const uint8_t* const* rows, size_t off, size_t pos_stride, size_t kh, size_t nq,
           __m512i& a0, __m512i& a1) const {
    const uint8_t* w = wq;
    for (size_t ky = 0; ky < kh; ++ky) {
      const uint8_t* t = rows[ky] + off;
      for (size_t q = 0; q < nq; ++q, t += pos_stride, w += kBlock) {
        a0 = _mm512_dpbusd_epi32(a0, _mm512_load_si512(reinterpret_cast<const __m512i*>(t)),
                                 _mm512_load_si512(reinterpret_cast<const __m512i*>(w)));
        a1 = _mm512_dpbusd_epi32(a1, _mm512_load_si512(reinterpret_cast<const __m512i*>(t + 64)),
                                 _mm512_load_si512(reinterpret_cast<const __m512i*>(w + 64)));
      }
    }
  }
};

template <int KH, int NQ>
void row_impl(size_t channels, size_t ow, size_t kh, size_t nq, const uint8_t* const* rows,
              const uint8_t* packed, int32_t xz, uint8_t* y, size_t y_stride,
              const RequantEpilogue* ep) {
  const size_t blocks = blocks_of(channels), pos_stride = blocks * kBlock;
  const size_t block_bytes = kBlock + kh * nq * kBlock;
  Epilogue e(ep, xz);
  for (size_t b = 0; b < blocks; ++b) {
    const uint8_t* pb = packed + b * block_bytes;
    e.block(ep, channels, b, pb);
    Taps<KH, NQ> taps;
    taps.load(pb + kBlock, kh, nq);
    const size_t t_off = b * kBlock, t_step = nq * pos_stride;
    uint8_t* yb = y + b * kCT;
    size_t ox = 0;
    // Two output columns per step: independent chains for the scheduler, and one
    // packus + permute for both.
    for (; ox + 1 < ow; ox += 2, yb += 2 * y_stride) {
      __m512i a0 = e.init0, a1 = e.init1, c0 = e.init0, c1 = e.init1;
      taps.run(rows, ox * t_step + t_off, pos_stride, kh, nq, a0, a1);
      taps.run(rows, (ox + 1) * t_step + t_off, pos_stride, kh, nq, c0, c1);
      e.store_pair(a0, a1, c0, c1, yb, y_stride);
    }
    if (ox < ow) {
      __m512i a0 = e.init0, a1 = e.init1;
      taps.run(rows, ox * t_step + t_off, pos_stride, kh, nq, a0, a1);
      e.store_one(a0, a1, yb);
    }
  }
}

__m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// Interleaves the 4 taps of one 32-channel block and stores the 128-byte block.
void interleave_store(__m256i v0, __m256i v1, __m256i v2, __m256i v3, uint8_t* t) {
  const __m256i a = _mm256_unpacklo_epi8(v0, v1);
  const __m256i a2 = _mm256_unpackhi_epi8(v0, v1);
  const __m256i d = _mm256_unpacklo_epi8(v2, v3);
  const __m256i d2 = _mm256_unpackhi_epi8(v2, v3);
  __m256i* out = reinterpret_cast<__m256i*>(t);
  _mm256_store_si256(out + 0, _mm256_unpacklo_epi16(a, d));
  _mm256_store_si256(out + 1, _mm256_unpackhi_epi16(a, d));
  _mm256_store_si256(out + 2, _mm256_unpacklo_epi16(a2, d2));
  _mm256_store_si256(out + 3, _mm256_unpackhi_epi16(a2, d2));
}

// The 4 taps of every block of one output column (null source: zero point).
void transform_position(const uint8_t* const* src, size_t c, size_t blocks, __m256i pad,
                        uint8_t* t) {
  for (size_t b = 0; b < blocks; ++b, t += kBlock) {
    const __mmask32 m = tail_mask(c - b * kCT);
    __m256i v[kG];
    for (size_t i = 0; i < kG; ++i)
      v[i] = src[i] ? _mm256_maskz_loadu_epi8(m, src[i] + b * kCT) : pad;
    interleave_store(v[0], v[1], v[2], v[3], t);
  }
}

// Output columns whose NT real taps all lie inside the row (the other 4 - NT
// taps of the group are past the kernel and read as the zero point). x: first
// tap of the first column; taps are `tap` bytes apart, columns `step` bytes.
template <int NT>
void transform_span(const uint8_t* x, size_t n, size_t step, size_t tap, size_t c, size_t blocks,
                    __m256i pad, uint8_t* t, size_t t_step) {
  const __mmask32 last = tail_mask(c - (blocks - 1) * kCT);
  for (size_t i = 0; i < n; ++i, x += step, t += t_step) {
    const uint8_t* p = x;
    uint8_t* o = t;
    size_t b = 0;
    for (; b + 1 < blocks; ++b, p += kCT, o += kBlock) {
      const __m256i v0 = load32(p);
      const __m256i v1 = NT > 1 ? load32(p + tap) : pad;
      const __m256i v2 = NT > 2 ? load32(p + 2 * tap) : pad;
      const __m256i v3 = NT > 3 ? load32(p + 3 * tap) : pad;
      interleave_store(v0, v1, v2, v3, o);
    }
    // The last block may be partial: masked loads never touch bytes past the row.
    const __m256i v0 = _mm256_maskz_loadu_epi8(last, p);
    const __m256i v1 = NT > 1 ? _mm256_maskz_loadu_epi8(last, p + tap) : pad;
    const __m256i v2 = NT > 2 ? _mm256_maskz_loadu_epi8(last, p + 2 * tap) : pad;
    const __m256i v3 = NT > 3 ? _mm256_maskz_loadu_epi8(last, p + 3 * tap) : pad;
    interleave_store(v0, v1, v2, v3, o);
  }
}

}  // namespace

void qu8_dwconv_32c4__avx512vnni_pack(size_t channels, size_t kh, size_t kw, const int8_t* w,
                                      void* packed) {
  dw32::pack(channels, kh, kw, w, packed);
}

void qu8_dwconv_32c4__avx512vnni_transform(const DwRowGeometry* g, const uint8_t* x_row, uint8_t xz,
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
  for (size_t q = 0; q < nq; ++q) {
    const size_t taps = std::min(kG, kw - q * kG);  // real taps in this group
    uint8_t* tq = t + q * pos_stride;
    for (size_t ox = 0; ox < ow; ++ox) {
      if (ox == ox_lo && ox_hi > ox_lo) {
        const uint8_t* p = x_row + (ox * stride + q * kG * dil - pad_left) * c;
        uint8_t* o = tq + ox * nq * pos_stride;
        const size_t n = ox_hi - ox_lo, step = stride * c, tap = dil * c, ts = nq * pos_stride;
        switch (taps) {
          case 1:
            transform_span<1>(p, n, step, tap, c, blocks, pad, o, ts);
            break;
          case 2:
            transform_span<2>(p, n, step, tap, c, blocks, pad, o, ts);
            break;
          case 3:
            transform_span<3>(p, n, step, tap, c, blocks, pad, o, ts);
            break;
          default:
            transform_span<4>(p, n, step, tap, c, blocks, pad, o, ts);
            break;
        }
        ox = ox_hi - 1;
        continue;
      }
      const uint8_t* src[kG] = {nullptr, nullptr, nullptr, nullptr};
      for (size_t i = 0; i < taps; ++i) {
        // Unsigned wrap-around: columns left of the row become huge and fail `< w`.
        const size_t col = ox * stride + (q * kG + i) * dil - pad_left;
        if (x_row && col < w) src[i] = x_row + col * c;
      }
      transform_position(src, c, blocks, pad, tq + ox * nq * pos_stride);
    }
  }
}

void qu8_dwconv_32c4__avx512vnni_row(size_t channels, size_t ow, size_t kh, size_t nq,
                                     const uint8_t* const* t_rows, const void* packed, int32_t xz,
                                     uint8_t* y, size_t y_stride, const RequantEpilogue* ep) {
  const uint8_t* p = static_cast<const uint8_t*>(packed);
  // 3x3 and 5x5 keep their weights in registers.
  auto row = kh == 3 && nq == 1   ? row_impl<3, 1>
             : kh == 5 && nq == 2 ? row_impl<5, 2>
                                  : row_impl<0, 0>;
  row(channels, ow, kh, nq, t_rows, p, xz, y, y_stride, ep);
}

}  // namespace npq
