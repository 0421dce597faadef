// AVX2 indirect GEMM for convolution by the sign trick, 4 rows x 16 columns,
// K in groups of 4: qu8-gemm-4x16c4-avx2-sign.cc's arithmetic and packed
// weights (PackedLayout{nr=16, kr=4, k_align=4, w16=0, w127=1}) with A read
// through the conv driver's indirection table (ukernel.h qigemm_requant_fn).
// Exact for every u8 activation, zero point and weight in [-127, 127] plus the
// panel's fix table of weights that were -128 (why: the GEMM's comment and
// docs/ukernels.md; layers with more -128s than the table holds are packed for
// the gathered full-range path by the driver).
//
// Per call (one tile of 4 output pixels), the 4 rows' ks*kc activations are
// read through the table once and prepared into a stack buffer (per K group:
// the sign mask m of s = a ^ 0x80, then |s|), which every 16-column panel of
// the call reuses; so the K loop is the GEMM's: 2 weight loads, 8
// vpbroadcastd, 8 x (vpxor, vpsubb, vpmaddubsw, vpmaddwd, vpaddd). K = ks*kc
// above kSignWholeK is prepared in kSignKC chunks per panel.
//
//   acc = sum_k s_k w'_k + (128 - zp) * colsum - sum_{fix (k, n)} s_k
// Padding rows read `zero` (kc bytes of zp): their s_k = zp - 128 cancels the
// (128 - zp) * colsum share of that tap, so they contribute exactly 0.
#include "avx2-sign.h"

namespace npq {
namespace {

constexpr size_t kMR = 4, kNR = kSignNR, kKR = kSignKR, kNV = kSignNV;

// Row r of tap s of the tile.
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

// Prepared K [k0, k0 + len) of all kMR rows (K = tap * kc + channel).
void prepare(const Rows& rows, size_t kc, size_t k0, size_t len, uint8_t* buf) {
  for (size_t r = 0; r < kMR; ++r) {
    uint8_t* dst = buf + r * kSignPitch;
    const size_t end = k0 + len;
    for (size_t k = k0; k < end;) {
      const size_t s = k / kc, off = k - s * kc;
      const size_t n = kc - off < end - k ? kc - off : end - k;
      sign_prepare_run(rows.at(s, r) + off, n, dst + 2 * (k - k0));
      k += n;
    }
  }
}

// acc += the K groups [0, len) of prepared rows buf against weights wk. No
// calls inside: the 8 accumulators stay in registers.
NPQ_INLINE void run_k(const uint8_t* buf, size_t len, const int8_t* wk, __m256i ones,
                      __m256i (&acc)[kMR][kNV]) {
  for (size_t k = 0; k < len; k += kKR) sign_step<kMR>(buf, k, wk + k * kNR, ones, acc);
}

// K = kp beyond kSignWholeK: one panel's sums, prepared in kSignKC chunks. Kept
// out of line so that its prepare() calls do not push the accumulators of the
// common (whole) path to the stack.
__attribute__((noinline)) void accumulate_chunked(const Rows& rows, size_t kc, size_t kp,
                                                  const int8_t* pw, uint8_t* buf,
                                                  __m256i (&out)[kMR][kNV]) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[kMR][kNV];
#pragma GCC unroll 16
  for (size_t r = 0; r < kMR; ++r)
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v) acc[r][v] = _mm256_setzero_si256();
  for (size_t k0 = 0; k0 < kp; k0 += kSignKC) {
    const size_t len = kp - k0 < kSignKC ? kp - k0 : kSignKC;
    prepare(rows, kc, k0, len, buf);
    run_k(buf, len, pw + k0 * kNR, ones, acc);
  }
#pragma GCC unroll 16
  for (size_t r = 0; r < kMR; ++r)
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v) out[r][v] = acc[r][v];
}

}  // namespace

void qu8_igemm_4x16c4__avx2_sign_requant(size_t mr, size_t nc, size_t kc, size_t ks,
                                         const size_t* a, const uint8_t* a_base, size_t pad,
                                         const uint8_t* zero, const void* w, int32_t a_zp,
                                         uint8_t* c, size_t c_stride, const RequantEpilogue* ep) {
  const Rows rows{a, a_base, pad, zero};
  const size_t kp = ks * kc;  // kc is a multiple of kKR
  const size_t w_bytes = kp * kNR;
  const size_t panel_stride = kNR * sizeof(int32_t) + w_bytes + kW127FixWords * sizeof(uint32_t);
  const uint8_t* panel = static_cast<const uint8_t*>(w);
  alignas(32) uint8_t buf[kMR * kSignPitch];
  const bool whole = kp <= kSignWholeK;
  if (whole) prepare(rows, kc, 0, kp, buf);
  // (128 - zp): the +128 of s = a - 128 and the zero point, one term (one zp per call).
  const __m256i shift = _mm256_set1_epi32(128 - a_zp);
  const __m256i ones = _mm256_set1_epi16(1);
  for (size_t n0 = 0; n0 < nc; n0 += kNR, panel += panel_stride) {
    __m256i acc[kMR][kNV];
    const int8_t* pw = reinterpret_cast<const int8_t*>(panel + kNR * sizeof(int32_t));
    if (whole) {
#pragma GCC unroll 16
      for (size_t r = 0; r < kMR; ++r)
#pragma GCC unroll 16
        for (size_t v = 0; v < kNV; ++v) acc[r][v] = _mm256_setzero_si256();
      run_k(buf, kp, pw, ones, acc);
    } else {
      __m256i out[kMR][kNV];
      accumulate_chunked(rows, kc, kp, pw, buf, out);
#pragma GCC unroll 16
      for (size_t r = 0; r < kMR; ++r)
#pragma GCC unroll 16
        for (size_t v = 0; v < kNV; ++v) acc[r][v] = out[r][v];
    }
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v) {
      const __m256i colsum = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel) + v);
      const __m256i t = _mm256_mullo_epi32(shift, colsum);
#pragma GCC unroll 16
      for (size_t r = 0; r < kMR; ++r) acc[r][v] = _mm256_add_epi32(acc[r][v], t);
    }
    // Weights that were -128 ran as -127: subtract s_k = a_k - 128 once more.
    const uint32_t* fix = reinterpret_cast<const uint32_t*>(pw + w_bytes);
    if (fix[0] != 0) {
      alignas(32) int32_t t[kMR][kNR];
#pragma GCC unroll 16
      for (size_t r = 0; r < kMR; ++r)
#pragma GCC unroll 16
        for (size_t v = 0; v < kNV; ++v)
          _mm256_store_si256(reinterpret_cast<__m256i*>(&t[r][8 * v]), acc[r][v]);
      if (whole) {
        // s_k from the prepared rows (K group k/4 at byte 8*(k/4): the sign
        // operand's 4 bytes, then |s|'s): no division, no table lookups.
        for (uint32_t i = 1; i <= fix[0]; ++i) {
          const size_t k = fix[i] >> 8, col = fix[i] & 0xFF;
          const uint8_t* p = buf + 2 * (k & ~size_t{3}) + (k & 3);
#pragma GCC unroll 16
          for (size_t r = 0; r < kMR; ++r) {
            const uint8_t* q = p + r * kSignPitch;
#if defined(NPQ_SIGN_VPSIGNB)
            const int8_t sk = static_cast<int8_t>(q[0]);
#else
            const int8_t sk = static_cast<int8_t>(static_cast<uint8_t>((q[4] ^ q[0]) - q[0]));
#endif
            t[r][col] = static_cast<int32_t>(static_cast<uint32_t>(t[r][col]) -
                                             static_cast<uint32_t>(int32_t{sk}));
          }
        }
      } else {
        for (uint32_t i = 1; i <= fix[0]; ++i) {
          const size_t k = fix[i] >> 8, col = fix[i] & 0xFF;
          const size_t s = k / kc, off = k - s * kc;
          for (size_t r = 0; r < kMR; ++r)
            t[r][col] = static_cast<int32_t>(static_cast<uint32_t>(t[r][col]) -
                                             static_cast<uint32_t>(rows.at(s, r)[off] - 128));
        }
      }
#pragma GCC unroll 16
      for (size_t r = 0; r < kMR; ++r)
#pragma GCC unroll 16
        for (size_t v = 0; v < kNV; ++v)
          acc[r][v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(&t[r][8 * v]));
    }
    const size_t nn = nc - n0 < kNR ? nc - n0 : kNR;
    requant_store_ymm<kMR, kNV>(ep, c, c_stride, n0, nn, acc, mr);
  }
}

}  // namespace npq
