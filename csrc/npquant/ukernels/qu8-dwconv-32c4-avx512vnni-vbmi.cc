// AVX-512 VNNI + VBMI depthwise convolution: the packed weights, accumulator
// order and epilogue of qu8-dwconv-32c4-avx512vnni.cc, without its transformed
// rows. That kernel's transform interleaves 4 taps of every output column in
// memory (4x the input row, 8 unpacks and 4 stores per column and block) and the
// row kernel loads them back; on MobileNet's stride-2 layers the transform was
// 54% of the time. Here the "transform" only copies the input row between
// zero-point padding, and the row kernel gathers each group of taps in
// registers: two 32-byte loads per zmm and one vpermt2b (AVX512_VBMI, checked
// at run time by dispatch: Cascade/Cooper Lake have VNNI without VBMI and run
// the other kernel) per 16 channels.
//
// Block layout (as the other kernel): a 128-byte block whose 32-byte quarter j
// holds, in its 16-byte half L, the 4 taps of channels 16L + 4j .. 16L + 4j + 3.
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own
// `_mm512_undefined_*` self-initialization (GCC bug 105593); nothing here is.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "../ukernel.h"

// vpermt2b; every function that reaches it carries the target (always_inline
// callees must match their callers).
#define NPQ_VBMI __attribute__((target("avx512vbmi")))

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

// The row kernel reads padded input rows (no tap transform): the 4 taps of a
// group are gathered in registers by two vpermt2b from two zmm, A = (tap 0 |
// tap 1) and B = (tap 2 | tap 3), 32 channels each, into the 128-byte block
// layout above (the packed weights'). Taps past the kernel row (the 4th of a
// 3-tap row) meet zero weights, so they are not loaded: any register content.
struct Gather {
  __m512i lo, hi;  // vpermt2b indices of the block's bytes 0..63 and 64..127
  Gather() {
    alignas(64) uint8_t idx[kBlock];
    for (size_t ch = 0; ch < kCT; ++ch)
      for (size_t i = 0; i < kG; ++i) idx[block_offset(ch, i)] = static_cast<uint8_t>(i * kCT + ch);
    lo = _mm512_load_si512(reinterpret_cast<const __m512i*>(idx));
    hi = _mm512_load_si512(reinterpret_cast<const __m512i*>(idx + 64));
  }
};

__m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// acc += weights . the group of nt (1..4) real taps at p, p + tap, ...
template <int NT>
inline __attribute__((always_inline)) NPQ_VBMI void group(const uint8_t* p, size_t tap,
                                                          const Gather& gi, __m512i w0, __m512i w1,
                                                          __m512i& a0, __m512i& a1) {
  __m512i a = _mm512_castsi256_si512(load32(p));
  if (NT > 1) a = _mm512_inserti64x4(a, load32(p + tap), 1);
  __m512i b = a;
  if (NT > 2) b = _mm512_castsi256_si512(load32(p + 2 * tap));
  if (NT > 3) b = _mm512_inserti64x4(b, load32(p + 3 * tap), 1);
  a0 = _mm512_dpbusd_epi32(a0, _mm512_permutex2var_epi8(a, gi.lo, b), w0);
  a1 = _mm512_dpbusd_epi32(a1, _mm512_permutex2var_epi8(a, gi.hi, b), w1);
}

// acc += packed weights . taps, for one block of one output pixel. KW 3 and 5
// keep their weights in registers; KW = 0: any kernel, weights read each time.
template <int KH, int KW>
struct Taps {
  static constexpr int NQ = (KW + 3) / 4;
  __m512i w[KH * NQ * 2];
  void load(const uint8_t* wq, size_t, size_t) {
    for (int i = 0; i < KH * NQ * 2; ++i)
      w[i] = _mm512_load_si512(reinterpret_cast<const __m512i*>(wq + i * 64));
  }
  NPQ_VBMI void run(const uint8_t* const* rows, size_t off, size_t tap, const Gather& gi,
                    __m512i& a0, __m512i& a1) const {
#pragma GCC unroll 8
    for (int ky = 0; ky < KH; ++ky) {
      const uint8_t* p = rows[ky] + off;
#pragma GCC unroll 4
      for (int q = 0; q < NQ; ++q) {
        const __m512i w0 = w[(ky * NQ + q) * 2], w1 = w[(ky * NQ + q) * 2 + 1];
        const int nt = KW - 4 * q;
        if (nt >= 4)
          group<4>(p + 4 * q * tap, tap, gi, w0, w1, a0, a1);
        else if (nt == 3)
          group<3>(p + 4 * q * tap, tap, gi, w0, w1, a0, a1);
        else if (nt == 2)
          group<2>(p + 4 * q * tap, tap, gi, w0, w1, a0, a1);
        else
          group<1>(p + 4 * q * tap, tap, gi, w0, w1, a0, a1);
      }
    }
  }
};

template <>
struct Taps<0, 0> {
  const uint8_t* wq;
  size_t kh, kw;
  void load(const uint8_t* p, size_t h, size_t w) {
    wq = p;
    kh = h;
    kw = w;
  }
  NPQ_VBMI void run(const uint8_t* const* rows, size_t off, size_t tap, const Gather& gi,
                    __m512i& a0, __m512i& a1) const {
    const uint8_t* w = wq;
    for (size_t ky = 0; ky < kh; ++ky) {
      const uint8_t* p = rows[ky] + off;
      for (size_t q = 0; q * kG < kw; ++q, p += kG * tap, w += kBlock) {
        const __m512i w0 = _mm512_load_si512(reinterpret_cast<const __m512i*>(w));
        const __m512i w1 = _mm512_load_si512(reinterpret_cast<const __m512i*>(w + 64));
        const size_t nt = kw - q * kG;
        if (nt >= 4)
          group<4>(p, tap, gi, w0, w1, a0, a1);
        else if (nt == 3)
          group<3>(p, tap, gi, w0, w1, a0, a1);
        else if (nt == 2)
          group<2>(p, tap, gi, w0, w1, a0, a1);
        else
          group<1>(p, tap, gi, w0, w1, a0, a1);
      }
    }
  }
};

// The padded row's header (the row kernel cannot see the geometry): byte
// steps between output columns and between taps, and kw.
struct RowHeader {
  uint64_t col_step, tap_step, kw, pad;
};
constexpr size_t kHeader = 64;

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

template <int KH, int KW>
NPQ_VBMI void row_impl(size_t channels, size_t ow, size_t kh, size_t nq, const uint8_t* const* rows,
                       const uint8_t* packed, int32_t xz, uint8_t* y, size_t y_stride,
                       const RequantEpilogue* ep) {
  RowHeader hdr;
  std::memcpy(&hdr, rows[0], sizeof(hdr));
  const uint8_t* const* rp = rows;  // pixels from byte kHeader of each row
  const size_t blocks = blocks_of(channels);
  const size_t block_bytes = kBlock + kh * nq * kBlock;
  const size_t col_step = hdr.col_step, tap = hdr.tap_step;
  const Gather gi;
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
    Taps<KH, KW> taps;
    taps.load(pb + kBlock, kh, hdr.kw);
    const size_t t_off = kHeader + b * kCT, t_step = col_step;
    uint8_t* yb = y + b * kCT;
    size_t ox = 0;
    // Two output columns per step: independent chains for the scheduler, and one
    // packus + permute for both.
    for (; ox + 1 < ow; ox += 2, yb += 2 * y_stride) {
      __m512i a0 = init0, a1 = init1, c0 = init0, c1 = init1;
      taps.run(rp, ox * t_step + t_off, tap, gi, a0, a1);
      taps.run(rp, (ox + 1) * t_step + t_off, tap, gi, c0, c1);
      const __m512i p = requant_pair(a0, a1, bias0, bias1, mult0, mult1, hi_f, zp16);
      const __m512i r = requant_pair(c0, c1, bias0, bias1, mult0, mult1, hi_f, zp16);
      const __m512i u =
          _mm512_max_epu8(_mm512_permutexvar_epi32(out_idx2, _mm512_packus_epi16(p, r)), lo8);
      store32(yb, _mm512_castsi512_si256(u), full, store_mask);
      store32(yb + y_stride, _mm512_extracti64x4_epi64(u, 1), full, store_mask);
    }
    if (ox < ow) {
      __m512i a0 = init0, a1 = init1;
      taps.run(rp, ox * t_step + t_off, tap, gi, a0, a1);
      const __m512i p = requant_pair(a0, a1, bias0, bias1, mult0, mult1, hi_f, zp16);
      const __m512i u =
          _mm512_max_epu8(_mm512_permutexvar_epi32(out_idx2, _mm512_packus_epi16(p, p)), lo8);
      store32(yb, _mm512_castsi512_si256(u), full, store_mask);
    }
  }
}

}  // namespace

void qu8_dwconv_32c4__avx512vnni_vbmi_pack(size_t channels, size_t kh, size_t kw, const int8_t* w,
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

void qu8_dwconv_32c4__avx512vnni_vbmi_transform(const DwRowGeometry* g, const uint8_t* x_row,
                                                uint8_t xz, uint8_t* t) {
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

NPQ_VBMI void qu8_dwconv_32c4__avx512vnni_vbmi_row(size_t channels, size_t ow, size_t kh, size_t nq,
                                                   const uint8_t* const* t_rows, const void* packed,
                                                   int32_t xz, uint8_t* y, size_t y_stride,
                                                   const RequantEpilogue* ep) {
  const uint8_t* p = static_cast<const uint8_t*>(packed);
  // 3x3 and 5x5 keep their weights in registers.
  RowHeader hdr;
  std::memcpy(&hdr, t_rows[0], sizeof(hdr));
  auto row = kh == 3 && hdr.kw == 3   ? row_impl<3, 3>
             : kh == 5 && hdr.kw == 5 ? row_impl<5, 5>
                                      : row_impl<0, 0>;
  row(channels, ow, kh, nq, t_rows, p, xz, y, y_stride, ep);
}

}  // namespace npq
