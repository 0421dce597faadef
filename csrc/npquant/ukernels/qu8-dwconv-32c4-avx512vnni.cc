// AVX-512 VNNI depthwise convolution: 32-channel blocks, taps in groups of 4,
// one vpdpbusd per 16 channels and 4 taps (u8 x s8 summed exactly in int32).
//
// The transform interleaves 4 taps of 32 channels with two rounds of byte/word
// unpacks (which work within 128-bit lanes), and stores the four results as is:
// a 128-byte block whose 32-byte quarter j holds, in its 16-byte half L, the 4
// taps of channels 16L + 4j .. 16L + 4j + 3. Read as two zmm, the accumulators
// hold channels [0-3, 16-19, 4-7, 20-23] and [8-11, 24-27, 12-15, 28-31]; the
// packed weights, weight sums and requantization constants follow that order,
// and packs + one dword permute restore the natural order of the 32 outputs.
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own
// `_mm512_undefined_*` self-initialization (GCC bug 105593); nothing here is.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "../ukernel.h"

namespace npq {
namespace {

constexpr size_t kCT = 32, kG = 4, kBlock = kCT * kG;  // 128 bytes per block

// Channel (within a block) of dword d of accumulator z (0 or 1).
size_t acc_channel(size_t z, size_t d) {
  const size_t lane = d / 4;
  return 16 * (lane % 2) + 4 * (2 * z + lane / 2) + d % 4;
}

// Byte offset of channel ch (0..31), tap i (0..3) in a 128-byte block.
size_t block_offset(size_t ch, size_t i) {
  return ((ch % 16) / 4) * 32 + (ch / 16) * 16 + (ch % 4) * 4 + i;
}

size_t blocks_of(size_t channels) { return (channels + kCT - 1) / kCT; }

__mmask32 tail_mask(size_t n) { return n >= 32 ? ~__mmask32(0) : (__mmask32(1) << n) - 1; }

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

// Requantizes one column's two accumulators to 32 int16 (lane-mixed, see above),
// zero point added.
__m512i requant_pair(__m512i a0, __m512i a1, __m512 bias0, __m512 bias1, __m512 mult0, __m512 mult1,
                     __m512 hi_f, __m512i zp16) {
  __m512 v0 = _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(a0), bias0), mult0);
  __m512 v1 = _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(a1), bias1), mult1);
  v0 = _mm512_min_ps(v0, hi_f);
  v1 = _mm512_min_ps(v1, hi_f);
  const __m512i p = _mm512_packs_epi32(_mm512_cvtps_epi32(v0), _mm512_cvtps_epi32(v1));
  return _mm512_adds_epi16(p, zp16);
}

void store32(uint8_t* y, __m256i q, bool full, __mmask32 mask) {
  if (full) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), q);
  } else {
    _mm256_mask_storeu_epi8(y, mask, q);
  }
}

template <int KH, int NQ>
void row_impl(size_t channels, size_t ow, size_t kh, size_t nq, const uint8_t* const* rows,
              const uint8_t* packed, int32_t xz, uint8_t* y, size_t y_stride,
              const RequantEpilogue* ep) {
  const size_t blocks = blocks_of(channels), pos_stride = blocks * kBlock;
  const size_t block_bytes = kBlock + kh * nq * kBlock;
  const __m512i idx0 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i idx1 = _mm512_add_epi32(idx0, _mm512_set1_epi32(8));
  // After packs of each column and packus of two columns (p, r), natural dword k
  // of column p's 32 outputs sits at index out_idx2[k], column r's at out_idx2[8 + k].
  const __m512i out_idx2 = _mm512_setr_epi32(0, 8, 1, 9, 4, 12, 5, 13, 2, 10, 3, 11, 6, 14, 7, 15);
  // q = clamp(nearbyint(v) + zp, lo, hi) with one float op: v is first capped at
  // hi - zp (rounding is monotone and fixes integers, so this equals capping the
  // result at hi, and keeps cvtps2dq from overflowing upwards); below, cvtps2dq's
  // INT_MIN for v < -2^31 and the saturating packs only ever saturate values whose
  // result is < 0 <= lo, and the final byte max applies lo (no byte min: every
  // code is already <= hi, as in the AVX2 kernel).
  const __m512 hi_f = _mm512_set1_ps(static_cast<float>(ep->out_max - ep->out_zp));
  const __m512i lo8 = _mm512_set1_epi8(static_cast<char>(ep->out_min));
  const __m512i zp16 = _mm512_set1_epi16(static_cast<int16_t>(ep->out_zp));
  const __m512i neg_xz = _mm512_set1_epi32(-xz);
  for (size_t b = 0; b < blocks; ++b) {
    const uint8_t* pb = packed + b * block_bytes;
    const __m512i init0 =
        _mm512_mullo_epi32(_mm512_load_si512(reinterpret_cast<const __m512i*>(pb)), neg_xz);
    const __m512i init1 =
        _mm512_mullo_epi32(_mm512_load_si512(reinterpret_cast<const __m512i*>(pb + 64)), neg_xz);
    const __m512 blo = _mm512_loadu_ps(ep->bias_s + b * kCT);
    const __m512 bhi = _mm512_loadu_ps(ep->bias_s + b * kCT + 16);
    const __m512 mlo = _mm512_loadu_ps(ep->mult + b * kCT);
    const __m512 mhi = _mm512_loadu_ps(ep->mult + b * kCT + 16);
    const __m512 bias0 = _mm512_permutex2var_ps(blo, idx0, bhi);
    const __m512 bias1 = _mm512_permutex2var_ps(blo, idx1, bhi);
    const __m512 mult0 = _mm512_permutex2var_ps(mlo, idx0, mhi);
    const __m512 mult1 = _mm512_permutex2var_ps(mlo, idx1, mhi);
    const __mmask32 store_mask = tail_mask(channels - b * kCT);
    const bool full = channels - b * kCT >= kCT;
    Taps<KH, NQ> taps;
    taps.load(pb + kBlock, kh, nq);
    const size_t t_off = b * kBlock, t_step = nq * pos_stride;
    uint8_t* yb = y + b * kCT;
    size_t ox = 0;
    // Two output columns per step: independent chains for the scheduler, and one
    // packus + permute for both.
    for (; ox + 1 < ow; ox += 2, yb += 2 * y_stride) {
      __m512i a0 = init0, a1 = init1, c0 = init0, c1 = init1;
      taps.run(rows, ox * t_step + t_off, pos_stride, kh, nq, a0, a1);
      taps.run(rows, (ox + 1) * t_step + t_off, pos_stride, kh, nq, c0, c1);
      const __m512i p = requant_pair(a0, a1, bias0, bias1, mult0, mult1, hi_f, zp16);
      const __m512i r = requant_pair(c0, c1, bias0, bias1, mult0, mult1, hi_f, zp16);
      const __m512i u =
          _mm512_max_epu8(_mm512_permutexvar_epi32(out_idx2, _mm512_packus_epi16(p, r)), lo8);
      store32(yb, _mm512_castsi512_si256(u), full, store_mask);
      store32(yb + y_stride, _mm512_extracti64x4_epi64(u, 1), full, store_mask);
    }
    if (ox < ow) {
      __m512i a0 = init0, a1 = init1;
      taps.run(rows, ox * t_step + t_off, pos_stride, kh, nq, a0, a1);
      const __m512i p = requant_pair(a0, a1, bias0, bias1, mult0, mult1, hi_f, zp16);
      const __m512i u =
          _mm512_max_epu8(_mm512_permutexvar_epi32(out_idx2, _mm512_packus_epi16(p, p)), lo8);
      store32(yb, _mm512_castsi512_si256(u), full, store_mask);
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
  const size_t nq = (kw + kG - 1) / kG, taps = kh * kw;
  uint8_t* p = static_cast<uint8_t*>(packed);
  for (size_t b = 0; b < blocks_of(channels); ++b, p += kBlock + kh * nq * kBlock) {
    int32_t wsum[kCT];
    for (size_t z = 0; z < 2; ++z)
      for (size_t d = 0; d < 16; ++d) {
        const size_t ch = b * kCT + acc_channel(z, d);
        int32_t s = 0;
        for (size_t t = 0; ch < channels && t < taps; ++t) s += w[ch * taps + t];
        wsum[z * 16 + d] = s;
      }
    std::memcpy(p, wsum, sizeof(wsum));
    int8_t* q = reinterpret_cast<int8_t*>(p + kBlock);
    for (size_t ch = 0; ch < kCT && b * kCT + ch < channels; ++ch)
      for (size_t ky = 0; ky < kh; ++ky)
        for (size_t kx = 0; kx < kw; ++kx)
          q[(ky * nq + kx / kG) * kBlock + block_offset(ch, kx % kG)] =
              w[(b * kCT + ch) * taps + ky * kw + kx];
  }
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
