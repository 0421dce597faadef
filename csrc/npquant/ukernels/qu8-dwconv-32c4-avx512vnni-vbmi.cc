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
// Block layout, packing and epilogue: avx512-dw32.h, shared with the other kernel.
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own
// `_mm512_undefined_*` self-initialization (GCC bug 105593); nothing here is.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "../ukernel.h"
#include "avx512-dw32.h"

// vpermt2b; every function that reaches it carries the target (always_inline
// callees must match their callers).
#define NPQ_VBMI __attribute__((target("avx512vbmi")))

namespace npq {
namespace {

using namespace dw32;

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
  Epilogue e(ep, xz);
  for (size_t b = 0; b < blocks; ++b) {
    const uint8_t* pb = packed + b * block_bytes;
    e.block(ep, channels, b, pb);
    Taps<KH, KW> taps;
    taps.load(pb + kBlock, kh, hdr.kw);
    const size_t t_off = kHeader + b * kCT, t_step = col_step;
    uint8_t* yb = y + b * kCT;
    size_t ox = 0;
    // Two output columns per step: independent chains for the scheduler, and one
    // packus + permute for both.
    for (; ox + 1 < ow; ox += 2, yb += 2 * y_stride) {
      __m512i a0 = e.init0, a1 = e.init1, c0 = e.init0, c1 = e.init1;
      taps.run(rp, ox * t_step + t_off, tap, gi, a0, a1);
      taps.run(rp, (ox + 1) * t_step + t_off, tap, gi, c0, c1);
      e.store_pair(a0, a1, c0, c1, yb, y_stride);
    }
    if (ox < ow) {
      __m512i a0 = e.init0, a1 = e.init1;
      taps.run(rp, ox * t_step + t_off, tap, gi, a0, a1);
      e.store_one(a0, a1, yb);
    }
  }
}

}  // namespace

void qu8_dwconv_32c4__avx512vnni_vbmi_pack(size_t channels, size_t kh, size_t kw, const int8_t* w,
                                           void* packed) {
  dw32::pack(channels, kh, kw, w, packed);
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
