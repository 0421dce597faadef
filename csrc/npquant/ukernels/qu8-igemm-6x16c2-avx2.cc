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
constexpr size_t kPitch = kC2Pitch;

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

}  // namespace

void qu8_igemm_6x16c2__avx2_requant(size_t mr, size_t nc, size_t kc, size_t ks, const size_t* a,
                                    const uint8_t* a_base, size_t pad, const uint8_t* zero,
                                    const void* w, int32_t a_zp, uint8_t* c, size_t c_stride,
                                    const RequantEpilogue* ep) {
  const Rows rows{a, a_base, pad, zero};
  const size_t kp = ks * kc;  // kc is even
  alignas(32) int16_t buf[kMR * kPitch];
  __m256i neg_zp[kMR];
  for (size_t r = 0; r < kMR; ++r) neg_zp[r] = _mm256_set1_epi32(-a_zp);
  c2_panels<kMR>(
      nc, kp, static_cast<const uint8_t*>(w), neg_zp,
      [&](size_t k0, size_t len) { prepare(rows, kc, k0, len, buf); },
      [&](size_t len, const int8_t* wk, __m256i(&acc)[kMR][kNV]) { run_k(buf, len, wk, acc); },
      [&](size_t n0, size_t nn, const __m256i(&acc)[kMR][kNV]) {
        requant_store_ymm<kMR, kNV>(ep, c, c_stride, n0, nn, acc, mr);
      });
}

}  // namespace npq
