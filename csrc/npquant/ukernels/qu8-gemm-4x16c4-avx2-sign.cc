// AVX2 GEMM without VNNI by the sign trick, 4 rows x 16 columns, K in groups
// of 4. Exact for every u8 activation, any zero point, and every s8 weight.
//
// Activations are shifted to s8 (s = a ^ 0x80 = a - 128) and weights are
// stored in [-127, 127]; per K group and column,
//   vpxor+vpsubb t = (w ^ m) - m     m = (s < 0 ? -1 : 0): w takes the sign of s
//   vpmaddubsw   t = |s| * t         u8 x s8 pairs into int16
//   vpmaddwd     t = t * 1           int16 pairs into int32 (4 products per column)
//   vpaddd       acc += t
// The conditional negation is vpsignb(w, s) (ggml's form) except at s = 0,
// where |s| = 0 makes the product 0 either way. vpxor+vpsubb is one more op
// but runs on any vector ALU pipe; on Zen 4 vpsignb competes with the two
// multiply pipes: probe 93 vs 73 GMAC/s, this kernel 75 vs 69 (M=128,
// K=N=768). Build with -DNPQ_SIGN_VPSIGNB for the vpsignb form (to measure
// it on another core, e.g. Zen 3; both forms pass the same tests).
// |s| <= 128 and |w| <= 127, so each int16 pair sum is at most 2*128*127 =
// 32,512 < 32,767: vpmaddubsw never saturates (with u8 activations and s8
// weights it does: 211*71 + 171*107 = 33,278, which is why FBGEMM and MLAS
// need reduce_range). -(-128) would not fit s8, hence the weight bound.
//
// Exactness (docs/ukernels.md): with w = w' + d, w' = max(w, -127), d = -1
// where w = -128 (listed in the panel's fix table) and 0 elsewhere,
//   sum_k (a_k - zp) w_k = sum_k s_k w'_k + (128 - zp) * colsum - sum_{fix} s_k
// where colsum = sum_k w_k is the true column sum stored in the panel. All
// int32 arithmetic may wrap; the result is exact modulo 2^32 and fits.
//
// Layout: PackedLayout{nr=16, kr=4, k_align=4, w16=0, w127=1}: int8 weights
// (one byte per MAC: half the widening kernel's), a K group of a panel is two
// ymm (columns 0-7 and 8-15, 4 k each), so after vpmaddwd lane j of vector v
// is column 8v + j and no horizontal fold is needed.
//
// Activations: each call writes, per row and K group, m[4] then |s|[4] into a
// stack buffer (rows of up to kWholeK values once per call, reused by every
// panel; longer rows in kKC chunks per panel), so the K loop broadcasts both
// with two vpbroadcastd loads and does no per-row ALU work.
//
// Registers (16 ymm): 4 rows x 2 accumulators + 2 weights + m + |s| + one
// product + the int16 ones = 14 (5 rows fit in 16 and measured 2-4% faster;
// not taken yet).
#include "avx2-sign.h"

namespace npq {
namespace {

constexpr size_t kMR = 4, kNR = kSignNR, kKR = kSignKR, kNV = kSignNV;
constexpr size_t kWholeK = kSignWholeK, kKC = kSignKC, kPitch = kSignPitch;

// Per row, per K group of 4: the sign operand (m, or s for vpsignb) then
// |s| = |a ^ 0x80|, 4 bytes each (avx2-sign.h).
template <size_t M>
NPQ_INLINE void prepare(const uint8_t* const* ar, size_t k0, size_t kc, uint8_t* buf) {
  for (size_t r = 0; r < M; ++r) sign_prepare_run(ar[r] + k0, kc, buf + r * kPitch);
}

// Per row, the 16 column sums of s * w' over kp, two vectors of 8 columns.
template <size_t M>
NPQ_INLINE void accumulate(size_t kp, bool whole, const uint8_t* const* ar, const int8_t* w,
                           uint8_t* buf, __m256i (&acc)[M][kNV]) {
  const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r)
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v) acc[r][v] = _mm256_setzero_si256();
  const size_t chunk = whole ? kp : kKC;
  for (size_t k0 = 0; k0 < kp; k0 += chunk) {
    const size_t kc = kp - k0 < chunk ? kp - k0 : chunk;
    if (!whole) prepare<M>(ar, k0, kc, buf);
    const int8_t* wk = w + k0 * kNR;
    for (size_t k = 0; k < kc; k += kKR) sign_step<M>(buf, k, wk + k * kNR, ones, acc);
  }
}

struct Requant {
  const RequantEpilogue* ep;
  uint8_t* c;
  size_t c_stride;

  template <size_t M>
  NPQ_INLINE void store(size_t n0, size_t nn, const __m256i (&acc)[M][kNV]) const {
    requant_store_ymm<M, kNV>(ep, c, c_stride, n0, nn, acc);
  }
};

struct Dequant {
  const DequantEpilogue* ep;
  float* c;
  size_t c_stride;

  template <size_t M>
  NPQ_INLINE void store(size_t n0, size_t nn, const __m256i (&acc)[M][kNV]) const {
    dequant_store_ymm<M, kNV>(ep, c, c_stride, n0, nn, acc);
  }
};

// One function per row count (noinline): each K loop gets its own register
// allocation, as with a switch GCC would otherwise inline into one body.
template <size_t M, class Out>
__attribute__((noinline)) void gemm_rows(size_t nc, size_t kp, const uint8_t* a, size_t a_stride,
                                         const void* w, const int32_t* a_zp, const Out& out) {
  const uint8_t* ar[M];
  for (size_t r = 0; r < M; ++r) ar[r] = a + r * a_stride;
  const size_t w_bytes = kp * kNR;
  const size_t panel_stride = kNR * sizeof(int32_t) + w_bytes + kW127FixWords * sizeof(uint32_t);
  const uint8_t* panel = static_cast<const uint8_t*>(w);
  alignas(32) uint8_t buf[M * kPitch];
  const bool whole = kp <= kWholeK;
  if (whole) prepare<M>(ar, 0, kp, buf);
  // (128 - zp) per row: the +128 of s = a - 128 and the zero point, one term.
  __m256i shift[M];
  for (size_t r = 0; r < M; ++r) shift[r] = _mm256_set1_epi32(128 - a_zp[r]);
  for (size_t n0 = 0; n0 < nc; n0 += kNR, panel += panel_stride) {
    __m256i acc[M][kNV];
    const uint8_t* pw = panel + kNR * sizeof(int32_t);
    accumulate<M>(kp, whole, ar, reinterpret_cast<const int8_t*>(pw), buf, acc);
    for (size_t v = 0; v < kNV; ++v) {
      const __m256i colsum = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel) + v);
      for (size_t r = 0; r < M; ++r)
        acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_mullo_epi32(shift[r], colsum));
    }
    // Weights that were -128 ran as -127: subtract s_k = a_k - 128 once more.
    const uint32_t* fix = reinterpret_cast<const uint32_t*>(pw + w_bytes);
    if (fix[0] != 0) {
      alignas(32) int32_t t[M][kNR];
      for (size_t r = 0; r < M; ++r)
        for (size_t v = 0; v < kNV; ++v)
          _mm256_store_si256(reinterpret_cast<__m256i*>(&t[r][8 * v]), acc[r][v]);
      for (uint32_t i = 1; i <= fix[0]; ++i) {
        const size_t k = fix[i] >> 8, col = fix[i] & 0xFF;
        for (size_t r = 0; r < M; ++r)
          t[r][col] = static_cast<int32_t>(static_cast<uint32_t>(t[r][col]) -
                                           static_cast<uint32_t>(ar[r][k] - 128));
      }
      for (size_t r = 0; r < M; ++r)
        for (size_t v = 0; v < kNV; ++v)
          acc[r][v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(&t[r][8 * v]));
    }
    const size_t nn = nc - n0 < kNR ? nc - n0 : kNR;
    out.template store<M>(n0, nn, acc);
  }
}

template <class Out>
void gemm(size_t mr, size_t nc, size_t kp, const uint8_t* a, size_t a_stride, const void* w,
          const int32_t* a_zp, const Out& out) {
  with_rows<kMR>(mr,
                 [&](auto m) { gemm_rows<decltype(m)::value>(nc, kp, a, a_stride, w, a_zp, out); });
}

}  // namespace

void qu8_gemm_4x16c4__avx2_sign_requant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                        size_t a_stride, const void* w, const int32_t* a_zp,
                                        uint8_t* c, size_t c_stride, const RequantEpilogue* ep) {
  gemm(mr, nc, kp, a, a_stride, w, a_zp, Requant{ep, c, c_stride});
}

void qu8_gemm_4x16c4__avx2_sign_dequant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                        size_t a_stride, const void* w, const int32_t* a_zp,
                                        float* c, size_t c_stride, const DequantEpilogue* ep) {
  gemm(mr, nc, kp, a, a_stride, w, a_zp, Dequant{ep, c, c_stride});
}

}  // namespace npq
