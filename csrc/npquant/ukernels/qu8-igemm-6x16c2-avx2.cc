// AVX2 indirect GEMM for the stem path (ops/conv2d.h), full range by int16 products:
// 6 rows x 16 columns, K in pairs. Layout PackedLayout{nr=16, kr=2, k_align=2, w16=1}:
// a K pair of a panel is two ymm of 8 columns x (w[k], w[k+1]) as int16.
//
// Per call (a tile of 6 output pixels) the rows' ks*kc activation bytes are read
// through the indirection table once and zero-extended to int16 into a stack buffer,
// which every 16-column panel reuses. The K loop is then, per K pair, 2 weight loads,
// 6 vpbroadcastd of (a[k], a[k+1]) and 12 x (vpmaddwd, vpaddd). Each vpmaddwd lane sums
// two products a * w with 0 <= a <= 255 and -128 <= w <= 127 (|sum| <= 65,280): exact in
// int32 for every input and weight, so no sign trick, no fix table and no -128 check
// (the sign kernels prepare rows in 4-byte steps and apply their fix table per tile, which
// at a stem layer's K = 30..168 cost more than the products; docs/conv.md).
//   acc = sum_k a_k w_k - zp * colsum      (accumulators start at -zp * colsum)
// Padding rows read `zero` (kc bytes of zp), which contribute zp * w - zp * w = 0.
// K above kWholeK is prepared in kChunk pieces per panel.
#include <immintrin.h>

#include <cstring>

#include "../ukernel.h"
#include "avx2-util.h"

namespace npq {
namespace {

constexpr size_t kMR = 6, kNR = 16, kNV = 2;
constexpr size_t kWholeK = 2048, kChunk = 512;  // int16 values per row
constexpr size_t kPitch = kWholeK + 32;         // int16 per prepared row (not 4 KiB apart)

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

// dst[0, n) = src[0, n) as int16 (n even), reading exactly n bytes.
NPQ_INLINE void widen_run(const uint8_t* src, size_t n, int16_t* dst) {
  size_t j = 0;
  for (; j + 16 <= n; j += 16)
    _mm256_storeu_si256(
        reinterpret_cast<__m256i*>(dst + j),
        _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j))));
  if (j + 8 <= n) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + j),
                     _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + j))));
    j += 8;
  }
  if (j + 4 <= n) {
    int32_t v;
    std::memcpy(&v, src + j, 4);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + j), _mm_cvtepu8_epi16(_mm_cvtsi32_si128(v)));
    j += 4;
  }
  if (j < n) {  // two bytes (n is even)
    dst[j] = src[j];
    dst[j + 1] = src[j + 1];
  }
}

// K [k0, k0 + len) of every row (K = tap * kc + channel), as int16.
void prepare(const Rows& rows, size_t kc, size_t k0, size_t len, int16_t* buf) {
  for (size_t r = 0; r < kMR; ++r) {
    int16_t* dst = buf + r * kPitch;
    const size_t end = k0 + len;
    for (size_t k = k0; k < end;) {
      const size_t s = k / kc, off = k - s * kc;
      const size_t n = kc - off < end - k ? kc - off : end - k;
      widen_run(rows.at(s, r) + off, n, dst + (k - k0));
      k += n;
    }
  }
}

// acc += vpmaddwd(a, w), one temporary (inline asm: GCC 12 otherwise copies
// accumulators between registers around intrinsics, docs/ukernels.md).
NPQ_INLINE void madd(__m256i& acc, __m256i a, __m256i w) {
  __m256i t;
  __asm__(
      "vpmaddwd %[w], %[a], %[t]\n\t"
      "vpaddd %[t], %[acc], %[acc]"
      : [acc] "+x"(acc), [t] "=&x"(t)
      : [a] "x"(a), [w] "x"(w));
}

// acc += the K pairs [0, len) of prepared rows buf against the panel's weights wk.
NPQ_INLINE void run_k(const int16_t* buf, size_t len, const int16_t* wk, __m256i (&acc)[kMR][kNV]) {
  for (size_t k = 0; k < len; k += 2, wk += 2 * kNR) {
    const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wk));
    const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wk) + 1);
#pragma GCC unroll 6
    for (size_t r = 0; r < kMR; ++r) {
      int32_t v;
      std::memcpy(&v, buf + r * kPitch + k, 4);
      const __m256i a = _mm256_set1_epi32(v);
      madd(acc[r][0], a, w0);
      madd(acc[r][1], a, w1);
    }
  }
}

// K beyond kWholeK: one panel's sums, prepared in kChunk pieces (out of line, so
// the common whole path keeps its accumulators in registers).
__attribute__((noinline)) void accumulate_chunked(const Rows& rows, size_t kc, size_t kp,
                                                  const int16_t* pw, int16_t* buf,
                                                  __m256i (&acc)[kMR][kNV]) {
  __m256i sum[kMR][kNV];
#pragma GCC unroll 6
  for (size_t r = 0; r < kMR; ++r)
#pragma GCC unroll 2
    for (size_t v = 0; v < kNV; ++v) sum[r][v] = acc[r][v];
  for (size_t k0 = 0; k0 < kp; k0 += kChunk) {
    const size_t len = kp - k0 < kChunk ? kp - k0 : kChunk;
    prepare(rows, kc, k0, len, buf);
    run_k(buf, len, pw + k0 * kNR, sum);
  }
#pragma GCC unroll 6
  for (size_t r = 0; r < kMR; ++r)
#pragma GCC unroll 2
    for (size_t v = 0; v < kNV; ++v) acc[r][v] = sum[r][v];
}

}  // namespace

void qu8_igemm_6x16c2__avx2_requant(size_t mr, size_t nc, size_t kc, size_t ks, const size_t* a,
                                    const uint8_t* a_base, size_t pad, const uint8_t* zero,
                                    const void* w, int32_t a_zp, uint8_t* c, size_t c_stride,
                                    const RequantEpilogue* ep) {
  const Rows rows{a, a_base, pad, zero};
  const size_t kp = ks * kc;  // kc is even
  const size_t panel_stride = kNR * sizeof(int32_t) + kp * kNR * sizeof(int16_t);
  const uint8_t* panel = static_cast<const uint8_t*>(w);
  alignas(32) int16_t buf[kMR * kPitch];
  const bool whole = kp <= kWholeK;
  if (whole) prepare(rows, kc, 0, kp, buf);
  const __m256i neg_zp = _mm256_set1_epi32(-a_zp);
  for (size_t n0 = 0; n0 < nc; n0 += kNR, panel += panel_stride) {
    __m256i acc[kMR][kNV];
#pragma GCC unroll 2
    for (size_t v = 0; v < kNV; ++v) {
      const __m256i init = _mm256_mullo_epi32(
          _mm256_load_si256(reinterpret_cast<const __m256i*>(panel) + v), neg_zp);
#pragma GCC unroll 6
      for (size_t r = 0; r < kMR; ++r) acc[r][v] = init;
    }
    const int16_t* pw = reinterpret_cast<const int16_t*>(panel + kNR * sizeof(int32_t));
    if (whole) {
      run_k(buf, kp, pw, acc);
    } else {
      // A copy through memory: passing acc itself would keep it on the stack in the
      // whole path too (its address escapes).
      __m256i io[kMR][kNV];
#pragma GCC unroll 6
      for (size_t r = 0; r < kMR; ++r)
#pragma GCC unroll 2
        for (size_t v = 0; v < kNV; ++v) io[r][v] = acc[r][v];
      accumulate_chunked(rows, kc, kp, pw, buf, io);
#pragma GCC unroll 6
      for (size_t r = 0; r < kMR; ++r)
#pragma GCC unroll 2
        for (size_t v = 0; v < kNV; ++v) acc[r][v] = io[r][v];
    }
    const size_t nn = nc - n0 < kNR ? nc - n0 : kNR;
    requant_store_ymm<kMR, kNV>(ep, c, c_stride, n0, nn, acc, mr);
  }
}

}  // namespace npq
