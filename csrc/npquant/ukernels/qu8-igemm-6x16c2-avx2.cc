// AVX2 indirect GEMM for convolution, full range by int16 products: 6 rows x 16
// columns, K in pairs, int8 weights sign-extended in the K loop. The arithmetic, the
// layout (PackedLayout{nr=16, kr=2, k_align=2, w16=0, w127=0}) and the 6-row K loop are
// the avx2 GEMM's (qu8-gemm-6x16c2-avx2.cc, avx2-c2.h: why it is exact), with A read
// through the conv driver's indirection table (ukernel.h qigemm_requant_fn). It is
// avx2's igemm and its stem kernel: every weight fits, so no layer needs a fallback.
//
// Per call (a tile of 6 output pixels) the rows' ks*kc activation bytes are read
// through the indirection table once and zero-extended to int16 into a stack buffer,
// which every 16-column panel reuses; K = ks*kc above kC2WholeK is prepared in
// kC2Chunk pieces, each once per group of kC2Group panels (c2_chunked).
//   acc = sum_k a_k w_k - zp * colsum      (accumulators start at -zp * colsum)
// Padding rows read `zero` (kc bytes of zp), which contribute zp * w - zp * w = 0.
#include "avx2-c2.h"

namespace npq {
namespace {

constexpr size_t kMR = 6, kNR = kC2NR, kNV = kC2NV;
constexpr size_t kWholeK = kC2WholeK, kPitch = kC2Pitch;

struct Rows {
  const size_t* a;
  const uint8_t* base;
  size_t pad;
  const uint8_t* zero;
  NPQ_INLINE const uint8_t* at(size_t s, size_t r) const {
    const size_t o = a[s * kMR + r];
    return o == pad ? zero : base + o;
  }
};

// K [k0, k0 + len) of every row (K = tap * kc + channel), as int16.
void prepare(const Rows& rows, size_t kc, size_t k0, size_t len, int16_t* buf) {
  for (size_t r = 0; r < kMR; ++r) {
    int16_t* dst = buf + r * kPitch;
    const size_t end = k0 + len;
    for (size_t k = k0; k < end;) {
      const size_t s = k / kc, off = k - s * kc;
      const size_t n = kc - off < end - k ? kc - off : end - k;
      c2_widen_run(rows.at(s, r) + off, n, dst + (k - k0));
      k += n;
    }
  }
}

// acc += the K pairs [0, len) of prepared rows buf against the panel's weights wk.
NPQ_INLINE void run_k(const int16_t* buf, size_t len, const int8_t* wk, __m256i (&acc)[kMR][kNV]) {
  if (len) c2_run_k6(buf, len, wk, acc);
}

// K beyond kWholeK: the sums of np panels into part (out of line, so the whole path
// keeps its accumulators in registers).
__attribute__((noinline)) void accumulate_chunked(const Rows& rows, size_t kc, size_t kp,
                                                  const uint8_t* panel, size_t panel_stride,
                                                  size_t np, int16_t* buf,
                                                  __m256i (*part)[kMR][kNV]) {
  c2_chunked<kMR>(
      kp, panel, panel_stride, np, part,
      [&](size_t k0, size_t len) { prepare(rows, kc, k0, len, buf); },
      [&](size_t len, const int8_t* wk, __m256i(&acc)[kMR][kNV]) { run_k(buf, len, wk, acc); });
}

}  // namespace

void qu8_igemm_6x16c2__avx2_requant(size_t mr, size_t nc, size_t kc, size_t ks, const size_t* a,
                                    const uint8_t* a_base, size_t pad, const uint8_t* zero,
                                    const void* w, int32_t a_zp, uint8_t* c, size_t c_stride,
                                    const RequantEpilogue* ep) {
  const Rows rows{a, a_base, pad, zero};
  const size_t kp = ks * kc;  // kc is even
  const size_t panel_stride = kNR * sizeof(int32_t) + kp * kNR;
  const uint8_t* panel = static_cast<const uint8_t*>(w);
  alignas(32) int16_t buf[kMR * kPitch];
  __m256i neg_zp[kMR];
  for (size_t r = 0; r < kMR; ++r) neg_zp[r] = _mm256_set1_epi32(-a_zp);
  if (kp <= kWholeK) {
    prepare(rows, kc, 0, kp, buf);
    for (size_t n0 = 0; n0 < nc; n0 += kNR, panel += panel_stride) {
      __m256i acc[kMR][kNV];
      c2_init_acc<kMR>(panel, neg_zp, acc);
      run_k(buf, kp, reinterpret_cast<const int8_t*>(panel + kNR * sizeof(int32_t)), acc);
      requant_store_ymm<kMR, kNV>(ep, c, c_stride, n0, nc - n0 < kNR ? nc - n0 : kNR, acc, mr);
    }
    return;
  }
  for (size_t n0 = 0; n0 < nc; n0 += kC2Group * kNR, panel += kC2Group * panel_stride) {
    const size_t np = (nc - n0 < kC2Group * kNR ? nc - n0 + kNR - 1 : kC2Group * kNR) / kNR;
    __m256i part[kC2Group][kMR][kNV];
    for (size_t p = 0; p < np; ++p) c2_init_acc<kMR>(panel + p * panel_stride, neg_zp, part[p]);
    accumulate_chunked(rows, kc, kp, panel, panel_stride, np, buf, part);
    for (size_t p = 0; p < np; ++p) {
      const size_t np0 = n0 + p * kNR;
      requant_store_ymm<kMR, kNV>(ep, c, c_stride, np0, nc - np0 < kNR ? nc - np0 : kNR, part[p],
                                  mr);
    }
  }
}

}  // namespace npq
