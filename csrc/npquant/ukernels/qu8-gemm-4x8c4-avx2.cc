// AVX2 GEMM without VNNI, 4 rows x 8 columns, K in groups of 4. Exact for
// every u8 activation and every s8 weight (including -128): both operands are
// int16 when they meet in vpmaddwd, whose pair sums (at most 2*255*128 in
// magnitude) fit in int32. vpmaddubsw would be faster on paper but saturates
// int16 (211*71 + 171*107 > 32767), which is why FBGEMM, MLAS and oneDNN need
// reduce_range on AVX2.
//
// Layout: PackedLayout{nr=8, kr=4, k_align=4, w16=1}: weights are stored
// already sign-extended to int16, so one K group of a panel is two ymm of
// 4 columns x 4 k (64 bytes) that go straight into vpmaddwd; twice the bytes
// of int8, but no widening shuffle in the K loop (+15-20% on Zen 4 for
// compute-bound shapes, measured; M=1 reads twice the bytes).
// Activations are widened once per K chunk into a small stack buffer, so a
// row's 4 values are broadcast as int16 with one load (vpbroadcastq).
// vpmaddwd then yields, per column, two partial sums (k0*w0 + k1*w1,
// k2*w2 + k3*w3) that a final vphaddd folds together.
//
// Registers (16 ymm): 4 rows x 2 accumulators + 2 weight vectors + one
// activation + one product = 12.
#include <immintrin.h>

#include <cstring>

#include "../ukernel.h"
#include "avx2-util.h"

namespace npq {
namespace {

constexpr size_t kMR = 4, kNR = 8, kKR = 4;
constexpr size_t kNV = kNR / 4;  // int16 weight vectors (4 columns each) per K group

// acc += a * w (int16 pairs summed into int32 lanes). Inline asm because GCC
// 12 otherwise copies every accumulator to a second register on each K step.
NPQ_INLINE void madd(__m256i& acc, __m256i a, __m256i w) {
  __m256i t;
  __asm__("vpmaddwd %3, %2, %1\n\tvpaddd %1, %0, %0" : "+x"(acc), "=&x"(t) : "x"(a), "x"(w));
}

// Activations are widened to int16 into a stack buffer, so the K loop
// broadcasts a row's 4 values with one load (vpbroadcastq) instead of a load
// plus a shuffle. Rows of up to kWholeK values are widened once per call and
// reused by every panel (+16% over per-panel widening, measured); longer rows
// are widened in kKC chunks per panel (a quarter of a shuffle per row and K
// group), small chunks so the buffer leaves L1 to the weights.
constexpr size_t kWholeK = 4096, kKC = 512;
constexpr size_t kPitch = kWholeK + 32;  // rows 8 KiB apart would share L1 sets

template <size_t M>
NPQ_INLINE void widen(const uint8_t* const* ar, size_t k0, size_t kc, int16_t* buf) {
  for (size_t r = 0; r < M; ++r) {
    const uint8_t* src = ar[r] + k0;
    int16_t* dst = buf + r * kPitch;
    size_t j = 0;
    for (; j + 16 <= kc; j += 16)
      _mm256_store_si256(
          reinterpret_cast<__m256i*>(dst + j),
          _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j))));
    for (; j < kc; j += 4) {
      int32_t v;
      std::memcpy(&v, src + j, 4);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + j),
                       _mm_cvtepu8_epi16(_mm_cvtsi32_si128(v)));
    }
  }
}

template <size_t M>
NPQ_INLINE void step(const int16_t* buf, size_t k, const int16_t* wk, __m256i (&acc)[M][kNV]) {
  __m256i wv[kNV];
#pragma GCC unroll 16
  for (size_t v = 0; v < kNV; ++v)
    wv[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(wk) + v);
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r) {
    int64_t a4;
    std::memcpy(&a4, buf + r * kPitch + k, 8);
    const __m256i av = _mm256_set1_epi64x(a4);
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v) madd(acc[r][v], av, wv[v]);
  }
}

// Per row, the 8 column sums of one panel over kp (before the zero-point
// term). `whole` says buf already holds all kp widened values of every row.
template <size_t M>
NPQ_INLINE void accumulate(size_t kp, bool whole, const uint8_t* const* ar, const int16_t* w,
                           int16_t* buf, __m256i (&out)[M][1]) {
  __m256i acc[M][kNV];
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r)
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v) acc[r][v] = _mm256_setzero_si256();
  const size_t chunk = whole ? kp : kKC;
  for (size_t k0 = 0; k0 < kp; k0 += chunk) {
    const size_t kc = kp - k0 < chunk ? kp - k0 : chunk;
    if (!whole) widen<M>(ar, k0, kc, buf);
    const int16_t* wk = w + k0 * kNR;
    for (size_t k = 0; k < kc; k += kKR) step<M>(buf, k, wk + k * kNR, acc);
  }
  // Lanes of acc[r][v]: (c, half) for columns c = 4v..4v+3. vphaddd gives
  // columns 0 1 4 5 | 2 3 6 7; vpermq restores 0..7.
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r)
    out[r][0] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[r][0], acc[r][1]), 0xD8);
}

// The epilogues see one 8-column vector per row.
struct Requant {
  const RequantEpilogue* ep;
  uint8_t* c;
  size_t c_stride;

  template <size_t M>
  NPQ_INLINE void store(size_t n0, size_t nn, const __m256i (&acc)[M][1]) const {
    requant_store_ymm<M, 1>(ep, c, c_stride, n0, nn, acc);
  }
};

struct Dequant {
  const DequantEpilogue* ep;
  float* c;
  size_t c_stride;

  template <size_t M>
  NPQ_INLINE void store(size_t n0, size_t nn, const __m256i (&acc)[M][1]) const {
    dequant_store_ymm<M, 1>(ep, c, c_stride, n0, nn, acc);
  }
};

// One function per row count (noinline): each K loop gets its own register
// allocation, as with a switch GCC would otherwise inline into one body.
template <size_t M, class Out>
__attribute__((noinline)) void gemm_rows(size_t nc, size_t kp, const uint8_t* a, size_t a_stride,
                                         const void* w, const int32_t* a_zp, const Out& out) {
  const uint8_t* ar[M];
  for (size_t r = 0; r < M; ++r) ar[r] = a + r * a_stride;
  const size_t panel_stride = kNR * sizeof(int32_t) + kp * kNR * sizeof(int16_t);
  const uint8_t* panel = static_cast<const uint8_t*>(w);
  alignas(32) int16_t buf[M * kPitch];
  const bool whole = kp <= kWholeK;
  if (whole) widen<M>(ar, 0, kp, buf);
  for (size_t n0 = 0; n0 < nc; n0 += kNR, panel += panel_stride) {
    __m256i acc[M][1];
    accumulate<M>(kp, whole, ar, reinterpret_cast<const int16_t*>(panel + kNR * sizeof(int32_t)),
                  buf, acc);
    // Zero-point term: acc -= a_zp[r] * colsum (wrapping int32, exact overall).
    const __m256i colsum = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel));
    for (size_t r = 0; r < M; ++r)
      acc[r][0] =
          _mm256_sub_epi32(acc[r][0], _mm256_mullo_epi32(_mm256_set1_epi32(a_zp[r]), colsum));
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

void qu8_gemm_4x8c4__avx2_requant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                  size_t a_stride, const void* w, const int32_t* a_zp, uint8_t* c,
                                  size_t c_stride, const RequantEpilogue* ep) {
  gemm(mr, nc, kp, a, a_stride, w, a_zp, Requant{ep, c, c_stride});
}

void qu8_gemm_4x8c4__avx2_dequant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                  size_t a_stride, const void* w, const int32_t* a_zp, float* c,
                                  size_t c_stride, const DequantEpilogue* ep) {
  gemm(mr, nc, kp, a, a_stride, w, a_zp, Dequant{ep, c, c_stride});
}

}  // namespace npq
