// Full-range AVX2 arithmetic in K pairs, int8 weights (qu8-gemm-6x16c2-avx2.cc and the
// GEMV qu8-gemm-1x16c2-avx2.cc): layout PackedLayout{nr=16, kr=2, k_align=2, w16=0,
// w127=0}. A K pair of a panel is 32 bytes, columns 0-7 then 8-15, each column's
// (w[k], w[k+1]); one vpmovsxbw from memory turns 8 columns into int16 pairs. The
// activations are zero-extended to int16 once per call (prepared rows), so a row's
// (a[k], a[k+1]) is one vpbroadcastd, and vpmaddwd gives each column's
// a[k] w[k] + a[k+1] w[k+1] in its own int32 lane.
//
// Why it is exact: 0 <= a <= 255 and -128 <= w <= 127, so a lane's pair sum is at most
// 65,280 in magnitude: no saturation anywhere (vpmaddubsw, which the peers use, saturates
// int16 at 2 x 255 x 128), no sign trick and no -128 fix table. The accumulators start at
// -zp * colsum; all int32 adds may wrap (exact modulo 2^32, the final value fits for
// K <= 65,536).
//
// Everything here has internal linkage (anonymous namespace, always_inline), as in
// avx2-sign.h (docs/dispatch.md).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "../ukernel.h"
#include "avx2-util.h"

namespace npq {
namespace {

constexpr size_t kC2NR = 16, kC2NV = 2;  // columns per panel, 8-column vectors
// The 6-row tiles (GEMM, igemm) prepare rows of up to kC2WholeK values once per call
// and longer ones in kC2Chunk pieces (c2_chunked); rows are kC2Pitch int16 apart (not a
// multiple of 4 KiB, which would put the rows in the same L1 sets). kC2Group panels'
// sums wait in memory between the chunks.
constexpr size_t kC2WholeK = 2048, kC2Chunk = 512, kC2Pitch = kC2WholeK + 32, kC2Group = 16;

// dst[0, n) = src[0, n) as int16 (n even), reading exactly n bytes.
NPQ_INLINE void c2_widen_run(const uint8_t* src, size_t n, int16_t* dst) {
  size_t j = 0;
  for (; j + 16 <= n; j += 16)
    _mm256_storeu_si256(
        reinterpret_cast<__m256i*>(dst + j),
        _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j))));
  for (; j < n; j += 2) {
    dst[j] = src[j];
    dst[j + 1] = src[j + 1];
  }
}

// acc += vpmaddwd(a, w), one temporary (inline asm: GCC 12 otherwise copies
// accumulators between registers around intrinsics, docs/ukernels.md).
NPQ_INLINE void c2_madd(__m256i& acc, __m256i a, __m256i w) {
  __m256i t;
  __asm__(
      "vpmaddwd %[w], %[a], %[t]\n\t"
      "vpaddd %[t], %[acc], %[acc]"
      : [acc] "+x"(acc), [t] "=&x"(t)
      : [a] "x"(a), [w] "x"(w));
}

// 8 columns of a K pair (16 bytes at p), sign-extended to int16 pairs.
NPQ_INLINE __m256i c2_load_w(const int8_t* p) {
  __m256i w;
  __asm__("vpmovsxbw %[m], %[w]" : [w] "=x"(w) : [m] "m"(*reinterpret_cast<const __m128i*>(p)));
  return w;
}

// (a[k], a[k+1]) of a prepared row, in every 32-bit lane.
NPQ_INLINE __m256i c2_pair(const int16_t* row, size_t k) {
  int32_t v;
  __builtin_memcpy(&v, row + k, 4);
  return _mm256_set1_epi32(v);
}

// The 6-row K loop as one asm block: it needs all 16 registers (12 accumulators, 2
// weights, the broadcast, the product), and with the rows as separate statements (or
// one asm block per K pair) GCC 12 rotates accumulators through spare registers on
// every step (2-6 vmovdqa per K pair, seen in objdump). Here the scratch registers are
// fixed (ymm12-15, clobbered) and GCC places the accumulators in ymm0-11 for the loop.
// Row r's prepared values start r * kPitch int16 after row 0's: byte offsets as literals.
#define NPQ_PITCH_BYTES "4160"
static_assert(kC2Pitch * sizeof(int16_t) == 4160, "NPQ_PITCH_BYTES");
#define NPQ_ROW(r)                         \
  "vpbroadcastd " #r "*" NPQ_PITCH_BYTES   \
  "(%[row]), %%ymm14\n\t"                  \
  "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t" \
  "vpaddd %%ymm15, %[c" #r "0], %[c" #r    \
  "0]\n\t"                                 \
  "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t" \
  "vpaddd %%ymm15, %[c" #r "1], %[c" #r "1]\n\t"
// acc += K pairs [0, len) (len > 0, even) of rows at `row` against the weights at wk.
NPQ_INLINE void c2_run_k6(const int16_t* row, size_t len, const int8_t* wk,
                          __m256i (&acc)[6][kC2NV]) {
  const int8_t* const end = wk + len * kC2NR;
  __asm__(
      "1:\n\t"
      "vpmovsxbw (%[wk]), %%ymm12\n\t"
      "vpmovsxbw 16(%[wk]), %%ymm13\n\t" NPQ_ROW(0) NPQ_ROW(1) NPQ_ROW(2) NPQ_ROW(3) NPQ_ROW(4)
          NPQ_ROW(5) "add $4, %[row]\n\t"
                     "add $32, %[wk]\n\t"
                     "cmp %[wk], %[end]\n\t"
                     "jne 1b"
      : [c00] "+x"(acc[0][0]), [c01] "+x"(acc[0][1]), [c10] "+x"(acc[1][0]),
        [c11] "+x"(acc[1][1]), [c20] "+x"(acc[2][0]), [c21] "+x"(acc[2][1]),
        [c30] "+x"(acc[3][0]), [c31] "+x"(acc[3][1]), [c40] "+x"(acc[4][0]),
        [c41] "+x"(acc[4][1]), [c50] "+x"(acc[5][0]), [c51] "+x"(acc[5][1]), [row] "+r"(row),
        [wk] "+r"(wk)
      : [end] "r"(end)
      : "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
}
#undef NPQ_ROW
#undef NPQ_PITCH_BYTES

// The accumulators of a panel before its K loop: -zp[r] * colsum, colsum being the
// panel's first 16 int32.
template <size_t M>
NPQ_INLINE void c2_init_acc(const uint8_t* panel, const __m256i (&neg_zp)[M],
                            __m256i (&acc)[M][kC2NV]) {
#pragma GCC unroll 2
  for (size_t v = 0; v < kC2NV; ++v) {
    const __m256i colsum = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel) + v);
#pragma GCC unroll 6
    for (size_t r = 0; r < M; ++r) acc[r][v] = _mm256_mullo_epi32(colsum, neg_zp[r]);
  }
}

// Rows longer than kC2WholeK, K outermost: for each kC2Chunk of K, prepare(k0, len)
// widens that piece of every row into the buffer once, and run_k(len, wk, acc) adds it
// to each of the np panels' sums in part (panels panel_stride bytes apart from panel).
// Widening per panel instead cost ~8% at K = 2,304 (3 ops per 16 values, per panel).
// Out of line, so the whole-row path of c2_panels keeps its accumulators in registers.
template <size_t M, class Prepare, class RunK>
__attribute__((noinline)) void c2_chunked(size_t kp, const uint8_t* panel, size_t panel_stride,
                                          size_t np, __m256i (*part)[M][kC2NV],
                                          const Prepare& prepare, const RunK& run_k) {
  for (size_t k0 = 0; k0 < kp; k0 += kC2Chunk) {
    const size_t len = kp - k0 < kC2Chunk ? kp - k0 : kC2Chunk;
    prepare(k0, len);
    for (size_t p = 0; p < np; ++p) {
      __m256i acc[M][kC2NV];
#pragma GCC unroll 6
      for (size_t r = 0; r < M; ++r)
#pragma GCC unroll 2
        for (size_t v = 0; v < kC2NV; ++v) acc[r][v] = part[p][r][v];
      const int8_t* wk =
          reinterpret_cast<const int8_t*>(panel + p * panel_stride + kC2NR * sizeof(int32_t));
      run_k(len, wk + k0 * kC2NR, acc);
#pragma GCC unroll 6
      for (size_t r = 0; r < M; ++r)
#pragma GCC unroll 2
        for (size_t v = 0; v < kC2NV; ++v) part[p][r][v] = acc[r][v];
    }
  }
}

// The panel loop of the 6x16c2 GEMM and igemm over nc columns of packed panels: each
// panel's sums start at -zp * colsum (neg_zp per row), run_k(len, wk, acc) adds K, and
// store(n0, nn, acc) writes columns n0..n0+nn. prepare(k0, len) widens K [k0, k0 + len)
// of the tile's rows into the buffer run_k reads: all of K once when it fits, else K
// outermost through c2_chunked, kC2Group panels at a time.
template <size_t M, class Prepare, class RunK, class Store>
NPQ_INLINE void c2_panels(size_t nc, size_t kp, const uint8_t* panel, const __m256i (&neg_zp)[M],
                          const Prepare& prepare, const RunK& run_k, const Store& store) {
  const size_t panel_stride = kC2NR * sizeof(int32_t) + kp * kC2NR;
  if (kp <= kC2WholeK) {
    prepare(0, kp);
    for (size_t n0 = 0; n0 < nc; n0 += kC2NR, panel += panel_stride) {
      __m256i acc[M][kC2NV];
      c2_init_acc<M>(panel, neg_zp, acc);
      run_k(kp, reinterpret_cast<const int8_t*>(panel + kC2NR * sizeof(int32_t)), acc);
      store(n0, nc - n0 < kC2NR ? nc - n0 : kC2NR, acc);
    }
    return;
  }
  for (size_t n0 = 0; n0 < nc; n0 += kC2Group * kC2NR, panel += kC2Group * panel_stride) {
    const size_t group = kC2Group * kC2NR;
    const size_t np = (nc - n0 < group ? nc - n0 + kC2NR - 1 : group) / kC2NR;
    __m256i part[kC2Group][M][kC2NV];
    for (size_t p = 0; p < np; ++p) c2_init_acc<M>(panel + p * panel_stride, neg_zp, part[p]);
    c2_chunked<M>(kp, panel, panel_stride, np, part, prepare, run_k);
    for (size_t p = 0; p < np; ++p) {
      const size_t np0 = n0 + p * kC2NR;
      store(np0, nc - np0 < kC2NR ? nc - np0 : kC2NR, part[p]);
    }
  }
}

}  // namespace
}  // namespace npq
