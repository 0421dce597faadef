// AVX2 exact int8 Winograd F(2x2, 3x3): contract in ukernel.h (qu8_wino_input_fn,
// qu8_wino_gemm_fn), why it is exact in ops/winograd.h, the scalar model in
// qu8-winograd-2x8c2-scalar.cc. GEMM tile: 6 tiles x 16 output channels, channels in
// pairs (packed U with nr = 16, kr = 2).
//
// The transformed operands are int16 (|V| <= 1020, |U| <= 1152), which is what
// vpmaddwd multiplies: per pair of channels, one vpbroadcastd of a tile's two V
// values and one vpmaddwd against 8 columns x 2 channels of U give 16 exact
// products summed in pairs (|sum| < 2^22), added to int32 accumulators with vpaddd
// (wrapping, exact modulo 2^32). That is the exact widening GEMM's inner step (the
// madd_s16 probe), on 16 multiplies per 2x2 outputs and channel instead of 36.
//
// K loop per channel pair (objdump of gemm_tiles<6>): 2 aligned loads of U, 6 x
// (vpbroadcastd, 2 x (vpmaddwd, vpaddd)), no stack access; registers: 12
// accumulators, 2 U vectors, the broadcast and the product = all 16. Tiles tried
// (Zen 4, 1 thread, direct-equivalent GMAC/s on the 1x64x56x56 / 1x256x14x14 layers):
// 6x16 164 / 191; 5x16 163 / 177; 3x24 147 / 179; 4x24 101 / 125 (17 registers:
// an accumulator on the stack); 4x16 and 2x32 86 / 90 (GCC's allocation kept
// accumulators on the stack; the asm step below fixes that for partial tile counts).
//
// Per panel of 16 columns the kernel runs the 16 positions' K loops one after the
// other, keeping each position's 6 x 16 sums in a 6 KiB stack buffer, then applies
// the output transform, the shift and the requantization per tile and 8 columns.
#include <immintrin.h>

#include <cstring>

#include "../ukernel.h"
#include "avx2-util.h"

namespace npq {
namespace {

constexpr size_t kMR = 6;  // tiles per GEMM tile
constexpr size_t kNV = 2;  // 8-column vectors per GEMM tile
constexpr size_t kNR = 8 * kNV;

// One tile's step over a channel pair: broadcast its two V values (int16) and
// multiply-add them with the pair's 16 columns of U into the tile's two accumulators.
// One asm block per tile: with intrinsics GCC 12 hoisted the broadcasts, ran out of
// the 16 registers and kept accumulators on the stack for the partial tile counts
// (objdump), and copies accumulators between registers (docs/ukernels.md).
NPQ_INLINE void tile_step(__m256i& acc0, __m256i& acc1, const int16_t* a, __m256i w0, __m256i w1) {
  __m256i b, t;
  __asm__(
      "vpbroadcastd %[a], %[b]\n\t"
      "vpmaddwd %[w0], %[b], %[t]\n\t"
      "vpaddd %[t], %[acc0], %[acc0]\n\t"
      "vpmaddwd %[w1], %[b], %[t]\n\t"
      "vpaddd %[t], %[acc1], %[acc1]"
      : [acc0] "+x"(acc0), [acc1] "+x"(acc1), [b] "=&x"(b), [t] "=&x"(t)
      : [a] "m"(*reinterpret_cast<const int32_t*>(a)), [w0] "x"(w0), [w1] "x"(w1));
}

// Input transform of 16 channels: x[4*i + j] the widened pixels (0..255).
// V = B^T x B - 4 * xz at position (1, 1): B^T (xz J) B = xz b b^T with b = B^T 1 =
// (0, 2, 0, 0), so the zero point only touches V_11. Every partial result is
// within +-1020 (int16).
NPQ_INLINE void transform16(const __m256i (&x)[16], __m256i xz4, int16_t* v, size_t v_pos) {
  __m256i t[16];
  for (size_t j = 0; j < 4; ++j) {  // t = B^T x (over rows)
    t[0 + j] = _mm256_sub_epi16(x[0 + j], x[8 + j]);
    t[4 + j] = _mm256_add_epi16(x[4 + j], x[8 + j]);
    t[8 + j] = _mm256_sub_epi16(x[8 + j], x[4 + j]);
    t[12 + j] = _mm256_sub_epi16(x[4 + j], x[12 + j]);
  }
  for (size_t i = 0; i < 4; ++i) {  // V = t B (over columns)
    __m256i r[4];
    r[0] = _mm256_sub_epi16(t[4 * i + 0], t[4 * i + 2]);
    r[1] = _mm256_add_epi16(t[4 * i + 1], t[4 * i + 2]);
    r[2] = _mm256_sub_epi16(t[4 * i + 2], t[4 * i + 1]);
    r[3] = _mm256_sub_epi16(t[4 * i + 1], t[4 * i + 3]);
    if (i == 1) r[1] = _mm256_sub_epi16(r[1], xz4);
    for (size_t j = 0; j < 4; ++j)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(v + (4 * i + j) * v_pos), r[j]);
  }
}

// The K loop of one position: acc[r][vv] = sum over channel pairs of V x U.
template <size_t M>
NPQ_INLINE void position_sums(size_t kc, const int16_t* const (&a)[M], const int16_t* u,
                              __m256i (&acc)[M][kNV]) {
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r)
#pragma GCC unroll 16
    for (size_t vv = 0; vv < kNV; ++vv) acc[r][vv] = _mm256_setzero_si256();
  static_assert(kNV == 2, "tile_step does 16 columns");
  for (size_t k = 0; k < kc; k += 2, u += 2 * kNR) {
    const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(u));
    const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(u) + 1);
#pragma GCC unroll 16
    for (size_t r = 0; r < M; ++r) tile_step(acc[r][0], acc[r][1], a[r] + k, w0, w1);
  }
}

// One function per tile count (noinline: each K loop gets its own registers).
template <size_t M>
__attribute__((noinline)) void gemm_tiles(size_t nc, size_t kc, const int16_t* v, size_t v_row,
                                          size_t v_pos, const int16_t* u, uint8_t* const* y,
                                          const RequantEpilogue* ep) {
  const RequantYmm rq(ep);
  alignas(32) int32_t m[16][M][kNR];  // the 16 positions' sums of the panel
  for (size_t n0 = 0; n0 < nc; n0 += kNR, u += 16 * kc * kNR) {
    for (size_t p = 0; p < 16; ++p) {
      const int16_t* a[M];
#pragma GCC unroll 16
      for (size_t r = 0; r < M; ++r) a[r] = v + p * v_pos + r * v_row;
      __m256i acc[M][kNV];
      position_sums<M>(kc, a, u + p * kc * kNR, acc);
#pragma GCC unroll 16
      for (size_t r = 0; r < M; ++r)
#pragma GCC unroll 16
        for (size_t vv = 0; vv < kNV; ++vv)
          _mm256_store_si256(reinterpret_cast<__m256i*>(&m[p][r][8 * vv]), acc[r][vv]);
    }
    const size_t nn = nc - n0 < kNR ? nc - n0 : kNR;
    for (size_t r = 0; r < M; ++r)
      for (size_t vv = 0; vv < kNV && 8 * vv < nn; ++vv) {
        __m256i mv[16];
        for (size_t p = 0; p < 16; ++p)
          mv[p] = _mm256_load_si256(reinterpret_cast<const __m256i*>(&m[p][r][8 * vv]));
        // Y = A^T M A, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]] (wrapping int32).
        __m256i s0[4], s1[4];
        for (size_t i = 0; i < 4; ++i) {
          s0[i] = _mm256_add_epi32(_mm256_add_epi32(mv[4 * i], mv[4 * i + 1]), mv[4 * i + 2]);
          s1[i] = _mm256_sub_epi32(_mm256_sub_epi32(mv[4 * i + 1], mv[4 * i + 2]), mv[4 * i + 3]);
        }
        const __m256i yq[4] = {
            _mm256_add_epi32(_mm256_add_epi32(s0[0], s0[1]), s0[2]),
            _mm256_add_epi32(_mm256_add_epi32(s1[0], s1[1]), s1[2]),
            _mm256_sub_epi32(_mm256_sub_epi32(s0[1], s0[2]), s0[3]),
            _mm256_sub_epi32(_mm256_sub_epi32(s1[1], s1[2]), s1[3]),
        };
        const size_t c0 = n0 + 8 * vv, cn = nn - 8 * vv < 8 ? nn - 8 * vv : 8;
        const __m256 bias = _mm256_loadu_ps(ep->bias_s + c0);
        const __m256 mult = _mm256_loadu_ps(ep->mult + c0);
        for (size_t q = 0; q < 4; ++q) {
          uint8_t* out = y[4 * r + q];
          if (!out) continue;
          // 4 * acc exactly (ops/winograd.h): vpsrad recovers acc.
          const __m256i code = rq(_mm256_srai_epi32(yq[q], 2), bias, mult);
          const __m128i w16 =
              _mm_packs_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
          store_low_bytes(out + c0, cn, _mm_packus_epi16(w16, w16));
        }
      }
  }
}

}  // namespace

void qu8_winograd_6x16c2__avx2_input(size_t cg, size_t cp, const uint8_t* const* rows, int32_t xz,
                                     int16_t* v, size_t v_pos) {
  const __m256i xz4 = _mm256_set1_epi16(static_cast<int16_t>(4 * xz));
  __m256i x[16];
  size_t c = 0;
  for (; c + 16 <= cg; c += 16) {
    for (size_t i = 0; i < 16; ++i)
      x[i] = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i] + c)));
    transform16(x, xz4, v + c, v_pos);
  }
  if (c < cg) {
    // The last cg - c channels, copied next to zero points (so the channels past
    // cg transform to exactly 0) without reading past a row.
    alignas(16) uint8_t tail[16];
    for (size_t i = 0; i < 16; ++i) {
      std::memset(tail, static_cast<int>(xz), 16);
      std::memcpy(tail, rows[i] + c, cg - c);
      x[i] = _mm256_cvtepu8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(tail)));
    }
    transform16(x, xz4, v + c, v_pos);
    c += 16;
  }
  for (; c < cp; c += 16)
    for (size_t p = 0; p < 16; ++p)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(v + p * v_pos + c), _mm256_setzero_si256());
}

void qu8_winograd_6x16c2__avx2_gemm(size_t mr, size_t nc, size_t kc, const int16_t* v, size_t v_row,
                                    size_t v_pos, const void* u, uint8_t* const* y,
                                    const RequantEpilogue* ep) {
  with_rows<kMR>(mr, [&](auto m) {
    gemm_tiles<decltype(m)::value>(nc, kc, v, v_row, v_pos, static_cast<const int16_t*>(u), y, ep);
  });
}

}  // namespace npq
