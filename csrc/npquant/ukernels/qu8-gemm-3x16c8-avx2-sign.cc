// AVX2 GEMM without VNNI by the sign trick, 3 rows x 16 columns, K in groups
// of 8. Exact for every u8 activation, any zero point, and every s8 weight;
// the arithmetic, the -128 fix table and the zero-point term are those of
// qu8-gemm-4x16c4-avx2-sign.cc (read its header for why each step is exact).
//
// Layout: PackedLayout{nr=16, kr=8, k_align=8, w16=0, w127=1}: int8 weights,
// one byte per MAC; a K group of a panel is four ymm of 4 columns x 8 k
// (avx2-sign-c8.h). Per K group and row: one vpbroadcastq of the masks m, one
// of |s|, then 4 x (vpxor with the weights from memory, vpsubb, vpmaddubsw,
// vpmaddwd, vpaddd): 2 loads per 20 ALU ops, where the 4x16c4 kernel spends 2
// broadcasts and a share of 2 weight loads per 10. After the K loop vphaddd +
// vpermq fold each row's four accumulators into 16 columns in order.
//
// Registers (16 ymm): 3 rows x 4 accumulators + m + |s| + one product + the
// int16 ones. M = 1 runs the same loop with 4 accumulators (the GEMV case:
// 2 loads per 128 weight bytes).
#include "avx2-sign-c8.h"

namespace npq {
namespace {

constexpr size_t kMR = 3, kNR = kC8NR, kKR = kC8KR, kNV = kC8NV;
constexpr size_t kWholeK = kC8WholeK, kKC = kC8KC, kPitch = kC8Pitch;

template <size_t M>
NPQ_INLINE void prepare(const uint8_t* const* ar, size_t k0, size_t kc, uint8_t* buf) {
  for (size_t r = 0; r < M; ++r) c8_prepare_run(ar[r] + k0, kc, buf + r * kPitch);
}

// Per row, the 16 column sums of s * w' over kp, two vectors of 8 columns.
template <size_t M>
NPQ_INLINE void accumulate(size_t kp, bool whole, const uint8_t* const* ar, const int8_t* w,
                           uint8_t* buf, __m256i (&out)[M][2]) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[M][kNV];
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r)
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v) acc[r][v] = _mm256_setzero_si256();
  const size_t chunk = whole ? kp : kKC;
  for (size_t k0 = 0; k0 < kp; k0 += chunk) {
    const size_t kc = kp - k0 < chunk ? kp - k0 : chunk;
    if (!whole) prepare<M>(ar, k0, kc, buf);
    const int8_t* wk = w + k0 * kNR;
    for (size_t k = 0; k < kc; k += kKR) c8_step<M>(buf, kPitch, k, wk + k * kNR, ones, acc);
  }
  fold_c8<M>(acc, out);
}

struct Requant {
  const RequantEpilogue* ep;
  uint8_t* c;
  size_t c_stride;

  template <size_t M>
  NPQ_INLINE void store(size_t n0, size_t nn, const __m256i (&acc)[M][2]) const {
    requant_store_ymm<M, 2>(ep, c, c_stride, n0, nn, acc);
  }
};

struct Dequant {
  const DequantEpilogue* ep;
  float* c;
  size_t c_stride;

  template <size_t M>
  NPQ_INLINE void store(size_t n0, size_t nn, const __m256i (&acc)[M][2]) const {
    dequant_store_ymm<M, 2>(ep, c, c_stride, n0, nn, acc);
  }
};

// One function per row count (noinline): each K loop gets its own register
// allocation.
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
    __m256i acc[M][2];
    const uint8_t* pw = panel + kNR * sizeof(int32_t);
    accumulate<M>(kp, whole, ar, reinterpret_cast<const int8_t*>(pw), buf, acc);
    for (size_t v = 0; v < 2; ++v) {
      const __m256i colsum = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel) + v);
      for (size_t r = 0; r < M; ++r)
        acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_mullo_epi32(shift[r], colsum));
    }
    // Weights that were -128 ran as -127: subtract s_k = a_k - 128 once more.
    const uint32_t* fix = reinterpret_cast<const uint32_t*>(pw + w_bytes);
    if (fix[0] != 0) {
      // One-hot column masks and broadcast s_k, all in registers: no narrow
      // stores read back as vectors (store-forwarding stalls).
      const __m256i idx0 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
      const __m256i idx1 = _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15);
      for (uint32_t i = 1; i <= fix[0]; ++i) {
        const size_t k = fix[i] >> 8;
        const __m256i col = _mm256_set1_epi32(static_cast<int>(fix[i] & 0xFF));
        const __m256i h0 = _mm256_cmpeq_epi32(idx0, col), h1 = _mm256_cmpeq_epi32(idx1, col);
#pragma GCC unroll 16
        for (size_t r = 0; r < M; ++r) {
          const __m256i sk = _mm256_set1_epi32(static_cast<int>(ar[r][k]) - 128);
          acc[r][0] = _mm256_sub_epi32(acc[r][0], _mm256_and_si256(sk, h0));
          acc[r][1] = _mm256_sub_epi32(acc[r][1], _mm256_and_si256(sk, h1));
        }
      }
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

void qu8_gemm_3x16c8__avx2_sign_requant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                        size_t a_stride, const void* w, const int32_t* a_zp,
                                        uint8_t* c, size_t c_stride, const RequantEpilogue* ep) {
  gemm(mr, nc, kp, a, a_stride, w, a_zp, Requant{ep, c, c_stride});
}

void qu8_gemm_3x16c8__avx2_sign_dequant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                        size_t a_stride, const void* w, const int32_t* a_zp,
                                        float* c, size_t c_stride, const DequantEpilogue* ep) {
  gemm(mr, nc, kp, a, a_stride, w, a_zp, Dequant{ep, c, c_stride});
}

}  // namespace npq
