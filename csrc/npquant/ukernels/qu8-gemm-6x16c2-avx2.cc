// AVX2 GEMM without VNNI, full range by int16 products: 6 rows x 16 columns, K in pairs,
// int8 weights sign-extended in the K loop (layout and why it is exact: avx2-c2.h).
//
// Per K pair: 2 vpmovsxbw (weights from memory), 6 vpbroadcastd (a row's prepared pair),
// 12 x (vpmaddwd, vpaddd) for 192 MACs: 4 ALU ops per 32 MACs and a sixth of a shuffle,
// where the sign-trick kernels (qu8-gemm-3x16c8-avx2-sign.cc) spend 5. Rows of up to
// kC2WholeK values are prepared once per call; longer rows in kC2Chunk pieces, each once
// per group of kC2Group panels (c2_chunked).
//
// Registers (16 ymm): 12 accumulators, 2 weight vectors, the broadcast, one product.
#include "avx2-c2.h"

namespace npq {
namespace {

constexpr size_t kMR = 6, kNR = kC2NR, kNV = kC2NV;
constexpr size_t kPitch = kC2Pitch;

template <size_t M>
NPQ_INLINE void prepare(const uint8_t* const* ar, size_t k0, size_t len, int16_t* buf) {
  for (size_t r = 0; r < M; ++r) c2_widen_run(ar[r] + k0, len, buf + r * kPitch);
}

// acc += the K pairs [0, len) of prepared rows buf against a panel's weights wk.
template <size_t M>
NPQ_INLINE void run_k(const int16_t* buf, size_t len, const int8_t* wk, __m256i (&acc)[M][kNV]) {
  if constexpr (M == 6) {
    if (len) c2_run_k6(buf, len, wk, acc);
    return;
  }
  for (size_t k = 0; k < len; k += 2, wk += 2 * kNR) {
    const __m256i w0 = c2_load_w(wk), w1 = c2_load_w(wk + kNR);
#pragma GCC unroll 6
    for (size_t r = 0; r < M; ++r) {
      const __m256i a = c2_pair(buf + r * kPitch, k);
      c2_madd(acc[r][0], a, w0);
      c2_madd(acc[r][1], a, w1);
    }
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

// One function per row count (noinline): each K loop gets its own register allocation.
template <size_t M, class Out>
__attribute__((noinline)) void gemm_rows(size_t nc, size_t kp, const uint8_t* a, size_t a_stride,
                                         const void* w, const int32_t* a_zp, const Out& out) {
  const uint8_t* ar[M];
  for (size_t r = 0; r < M; ++r) ar[r] = a + r * a_stride;
  alignas(32) int16_t buf[M * kPitch];
  __m256i neg_zp[M];
  for (size_t r = 0; r < M; ++r) neg_zp[r] = _mm256_set1_epi32(-a_zp[r]);
  c2_panels<M>(
      nc, kp, static_cast<const uint8_t*>(w), neg_zp,
      [&](size_t k0, size_t len) { prepare<M>(ar, k0, len, buf); },
      [&](size_t len, const int8_t* wk, __m256i(&acc)[M][kNV]) { run_k<M>(buf, len, wk, acc); },
      [&](size_t n0, size_t nn, const __m256i(&acc)[M][kNV]) {
        out.template store<M>(n0, nn, acc);
      });
}

template <class Out>
void gemm(size_t mr, size_t nc, size_t kp, const uint8_t* a, size_t a_stride, const void* w,
          const int32_t* a_zp, const Out& out) {
  with_rows<kMR>(mr,
                 [&](auto m) { gemm_rows<decltype(m)::value>(nc, kp, a, a_stride, w, a_zp, out); });
}

}  // namespace

void qu8_gemm_6x16c2__avx2_requant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                   size_t a_stride, const void* w, const int32_t* a_zp, uint8_t* c,
                                   size_t c_stride, const RequantEpilogue* ep) {
  gemm(mr, nc, kp, a, a_stride, w, a_zp, Requant{ep, c, c_stride});
}

void qu8_gemm_6x16c2__avx2_dequant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                   size_t a_stride, const void* w, const int32_t* a_zp, float* c,
                                   size_t c_stride, const DequantEpilogue* ep) {
  gemm(mr, nc, kp, a, a_stride, w, a_zp, Dequant{ep, c, c_stride});
}

}  // namespace npq
