// What the two AVX-512 VNNI depthwise kernels share (qu8-dwconv-32c4-avx512vnni.cc,
// which reads rows with the taps interleaved in memory, and its -vbmi twin, which
// gathers them in registers): the packed weights' 128-byte block layout, the
// accumulators' lane order, and the requantizing epilogue.
//
// A block holds 32 channels x 4 taps: its 32-byte quarter j holds, in its 16-byte half
// L, the 4 taps of channels 16L + 4j .. 16L + 4j + 3. Read as two zmm, the accumulators
// hold channels [0-3, 16-19, 4-7, 20-23] and [8-11, 24-27, 12-15, 28-31]; the weight
// sums and requantization constants follow that order, and packs + one dword permute
// restore the natural order of the 32 outputs. Packed weights, per block: the 32 int32
// weight sums (128 bytes), then kh * nq blocks of taps (nq = ceil(kw / 4)).
//
// Included by files built with the avx512vnni flags only (cmake/isa.cmake); functions
// here carry no target attribute, so the VBMI kernel's functions (a superset) inline them.
// Everything has internal linkage (anonymous namespace), as in avx512-util.h: each file
// gets its own copy, and no symbol is shared between translation units (docs/dispatch.md).
#pragma once

#include <immintrin.h>

#include <cstring>

#include "../ukernel.h"

namespace npq {
namespace {
namespace dw32 {

constexpr size_t kCT = 32, kG = 4, kBlock = kCT * kG;  // 128 bytes per block

// Channel (within a block) of dword d of accumulator z (0 or 1).
inline size_t acc_channel(size_t z, size_t d) {
  const size_t lane = d / 4;
  return 16 * (lane % 2) + 4 * (2 * z + lane / 2) + d % 4;
}

// Byte offset of channel ch (0..31), tap i (0..3) in a 128-byte block.
inline size_t block_offset(size_t ch, size_t i) {
  return ((ch % 16) / 4) * 32 + (ch / 16) * 16 + (ch % 4) * 4 + i;
}

inline size_t blocks_of(size_t channels) { return (channels + kCT - 1) / kCT; }

inline __mmask32 tail_mask(size_t n) { return n >= 32 ? ~__mmask32(0) : (__mmask32(1) << n) - 1; }

// ukernel.h dwconv pack: weight sums, then the taps in the block layout above.
inline void pack(size_t channels, size_t kh, size_t kw, const int8_t* w, void* packed) {
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

// The requantizing epilogue of one row call. q = clamp(nearbyint(v) + zp, lo, hi) with
// one float op: v is first capped at hi - zp (rounding is monotone and fixes integers,
// so this equals capping the result at hi, and keeps cvtps2dq from overflowing
// upwards); cvtps2dq's INT_MIN for v < -2^31 and the saturating packs only ever
// saturate values whose result is < 0 <= lo, and the final byte max applies lo (no
// byte min: every code is already <= hi, as in the AVX2 kernel).
struct Epilogue {
  __m512i idx0, idx1, out_idx2, lo8, zp16, neg_xz;
  __m512 hi_f;
  // One block's constants: accumulator start (-xz * weight sums), bias and multiplier
  // in accumulator order, and its store mask.
  __m512i init0, init1;
  __m512 bias0, bias1, mult0, mult1;
  __mmask32 store_mask;
  bool full;

  inline __attribute__((always_inline)) Epilogue(const RequantEpilogue* ep, int32_t xz) {
    idx0 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    idx1 = _mm512_add_epi32(idx0, _mm512_set1_epi32(8));
    // After packs of each column and packus of two columns (p, r), natural dword k of
    // column p's 32 outputs sits at index out_idx2[k], column r's at out_idx2[8 + k].
    out_idx2 = _mm512_setr_epi32(0, 8, 1, 9, 4, 12, 5, 13, 2, 10, 3, 11, 6, 14, 7, 15);
    hi_f = _mm512_set1_ps(static_cast<float>(ep->out_max - ep->out_zp));
    lo8 = _mm512_set1_epi8(static_cast<char>(ep->out_min));
    zp16 = _mm512_set1_epi16(static_cast<int16_t>(ep->out_zp));
    neg_xz = _mm512_set1_epi32(-xz);
  }

  // Block b of `channels`, its packed weights at pb.
  inline __attribute__((always_inline)) void block(const RequantEpilogue* ep, size_t channels,
                                                   size_t b, const uint8_t* pb) {
    init0 = _mm512_mullo_epi32(_mm512_load_si512(reinterpret_cast<const __m512i*>(pb)), neg_xz);
    init1 =
        _mm512_mullo_epi32(_mm512_load_si512(reinterpret_cast<const __m512i*>(pb + 64)), neg_xz);
    const __m512 blo = _mm512_loadu_ps(ep->bias_s + b * kCT);
    const __m512 bhi = _mm512_loadu_ps(ep->bias_s + b * kCT + 16);
    const __m512 mlo = _mm512_loadu_ps(ep->mult + b * kCT);
    const __m512 mhi = _mm512_loadu_ps(ep->mult + b * kCT + 16);
    bias0 = _mm512_permutex2var_ps(blo, idx0, bhi);
    bias1 = _mm512_permutex2var_ps(blo, idx1, bhi);
    mult0 = _mm512_permutex2var_ps(mlo, idx0, mhi);
    mult1 = _mm512_permutex2var_ps(mlo, idx1, mhi);
    store_mask = tail_mask(channels - b * kCT);
    full = channels - b * kCT >= kCT;
  }

  // One column's two accumulators as 32 int16 (lane-mixed), zero point added.
  inline __attribute__((always_inline)) __m512i requant(__m512i a0, __m512i a1) const {
    __m512 v0 = _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(a0), bias0), mult0);
    __m512 v1 = _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(a1), bias1), mult1);
    v0 = _mm512_min_ps(v0, hi_f);
    v1 = _mm512_min_ps(v1, hi_f);
    const __m512i p = _mm512_packs_epi32(_mm512_cvtps_epi32(v0), _mm512_cvtps_epi32(v1));
    return _mm512_adds_epi16(p, zp16);
  }

  inline __attribute__((always_inline)) void store32(uint8_t* y, __m256i q) const {
    if (full) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), q);
    } else {
      _mm256_mask_storeu_epi8(y, store_mask, q);
    }
  }

  // Two adjacent output columns (a, c): one packus + permute for both.
  inline __attribute__((always_inline)) void store_pair(__m512i a0, __m512i a1, __m512i c0,
                                                        __m512i c1, uint8_t* y,
                                                        size_t y_stride) const {
    const __m512i u = _mm512_max_epu8(
        _mm512_permutexvar_epi32(out_idx2, _mm512_packus_epi16(requant(a0, a1), requant(c0, c1))),
        lo8);
    store32(y, _mm512_castsi512_si256(u));
    store32(y + y_stride, _mm512_extracti64x4_epi64(u, 1));
  }

  inline __attribute__((always_inline)) void store_one(__m512i a0, __m512i a1, uint8_t* y) const {
    const __m512i p = requant(a0, a1);
    const __m512i u =
        _mm512_max_epu8(_mm512_permutexvar_epi32(out_idx2, _mm512_packus_epi16(p, p)), lo8);
    store32(y, _mm512_castsi512_si256(u));
  }
};

}  // namespace dw32
}  // namespace
}  // namespace npq
