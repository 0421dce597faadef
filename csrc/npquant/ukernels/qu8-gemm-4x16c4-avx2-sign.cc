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
#include <immintrin.h>

#include <cstring>

#include "../ukernel.h"

namespace npq {
namespace {

#define NPQ_INLINE inline __attribute__((always_inline))

constexpr size_t kMR = 4, kNR = 16, kKR = 4;
constexpr size_t kNV = kNR / 8;  // weight vectors (8 columns x 4 k) per K group

// acc += vpmaddwd(vpmaddubsw(|s|, (w ^ m) - m), 1), m the sign mask of s
// (or, with NPQ_SIGN_VPSIGNB, s itself for vpsignb). Inline asm keeps the
// chain in one temporary and the accumulators in place (GCC 12 copies
// accumulators between registers around intrinsics, see docs/ukernels.md).
NPQ_INLINE void dot(__m256i& acc, __m256i s, __m256i u, __m256i w, __m256i ones) {
  __m256i t;
#if defined(NPQ_SIGN_VPSIGNB)
  __asm__("vpsignb %[s], %[w], %[t]\n\t"
#else
  __asm__("vpxor %[s], %[w], %[t]\n\t"
          "vpsubb %[s], %[t], %[t]\n\t"
#endif
          "vpmaddubsw %[t], %[u], %[t]\n\t"
          "vpmaddwd %[ones], %[t], %[t]\n\t"
          "vpaddd %[t], %[acc], %[acc]"
          : [acc] "+x"(acc), [t] "=&x"(t)
          : [s] "x"(s), [u] "x"(u), [w] "x"(w), [ones] "x"(ones));
}

// Per row, per K group of 4: the sign operand (m, or s for vpsignb) then
// |s| = |a ^ 0x80|, 4 bytes each.
constexpr size_t kWholeK = 4096, kKC = 512;
constexpr size_t kPitch = 2 * kWholeK + 64;  // bytes; rows 8 KiB apart would share L1 sets

template <size_t M>
NPQ_INLINE void prepare(const uint8_t* const* ar, size_t k0, size_t kc, uint8_t* buf) {
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (size_t r = 0; r < M; ++r) {
    const uint8_t* src = ar[r] + k0;
    uint8_t* dst = buf + r * kPitch;
    size_t j = 0;
    for (; j + 32 <= kc; j += 32) {
      __m256i s =
          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + j)), flip);
      const __m256i u = _mm256_abs_epi8(s);
#if !defined(NPQ_SIGN_VPSIGNB)
      s = _mm256_cmpgt_epi8(_mm256_setzero_si256(), s);
#endif
      // In-lane unpacks give K groups 0 1 4 5 and 2 3 6 7; reorder to 0-3, 4-7.
      const __m256i lo = _mm256_unpacklo_epi32(s, u), hi = _mm256_unpackhi_epi32(s, u);
      _mm256_store_si256(reinterpret_cast<__m256i*>(dst + 2 * j),
                         _mm256_permute2x128_si256(lo, hi, 0x20));
      _mm256_store_si256(reinterpret_cast<__m256i*>(dst + 2 * j + 32),
                         _mm256_permute2x128_si256(lo, hi, 0x31));
    }
    for (; j < kc; j += 4) {
      int32_t v;
      std::memcpy(&v, src + j, 4);
      const __m128i s = _mm_xor_si128(_mm_cvtsi32_si128(v), _mm256_castsi256_si128(flip));
#if defined(NPQ_SIGN_VPSIGNB)
      const __m128i sg = s;
#else
      const __m128i sg = _mm_cmpgt_epi8(_mm_setzero_si128(), s);
#endif
      _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + 2 * j),
                       _mm_unpacklo_epi32(sg, _mm_abs_epi8(s)));
    }
  }
}

template <size_t M>
NPQ_INLINE void step(const uint8_t* buf, size_t k, const int8_t* wk, __m256i ones,
                     __m256i (&acc)[M][kNV]) {
  __m256i wv[kNV];
#pragma GCC unroll 16
  for (size_t v = 0; v < kNV; ++v)
    wv[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(wk) + v);
#pragma GCC unroll 16
  for (size_t r = 0; r < M; ++r) {
    int32_t s4, u4;
    std::memcpy(&s4, buf + r * kPitch + 2 * k, 4);
    std::memcpy(&u4, buf + r * kPitch + 2 * k + 4, 4);
    const __m256i s = _mm256_set1_epi32(s4), u = _mm256_set1_epi32(u4);
#pragma GCC unroll 16
    for (size_t v = 0; v < kNV; ++v) dot(acc[r][v], s, u, wv[v], ones);
  }
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
    for (size_t k = 0; k < kc; k += kKR) step<M>(buf, k, wk + k * kNR, ones, acc);
  }
}

// Stores the low nn (0..16) bytes of b at p.
NPQ_INLINE void store_bytes(uint8_t* p, size_t nn, __m128i b) {
  if (nn == 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), b);
    return;
  }
  if (nn & 8) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), b);
    b = _mm_srli_si128(b, 8);
    p += 8;
  }
  if (nn & 4) {
    const int32_t v = _mm_cvtsi128_si32(b);
    std::memcpy(p, &v, 4);
    b = _mm_srli_si128(b, 4);
    p += 4;
  }
  if (nn & 2) {
    const int16_t v = static_cast<int16_t>(_mm_extract_epi16(b, 0));
    std::memcpy(p, &v, 2);
    b = _mm_srli_si128(b, 2);
    p += 2;
  }
  if (nn & 1) *p = static_cast<uint8_t>(_mm_extract_epi8(b, 0));
}

// All ones in lanes < n (n clamped to 0..8), for vmaskmovps.
NPQ_INLINE __m256i lane_mask(size_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n > 8 ? 8 : n)), idx);
}

struct Requant {
  const RequantEpilogue* ep;
  uint8_t* c;
  size_t c_stride;

  template <size_t M>
  NPQ_INLINE void store(size_t n0, size_t nn, const __m256i (&acc)[M][kNV]) const {
    const __m256 lim_hi = _mm256_set1_ps(1048576.0f), lim_lo = _mm256_set1_ps(-1048576.0f);
    const __m256i zp = _mm256_set1_epi32(ep->out_zp);
    const __m256i lo = _mm256_set1_epi32(ep->out_min), hi = _mm256_set1_epi32(ep->out_max);
    __m256 bias[kNV], mult[kNV];
    for (size_t v = 0; v < kNV; ++v) {
      bias[v] = _mm256_loadu_ps(ep->bias_s + n0 + 8 * v);
      mult[v] = _mm256_loadu_ps(ep->mult + n0 + 8 * v);
    }
    for (size_t r = 0; r < M; ++r) {
      __m256i q[kNV];
      for (size_t v = 0; v < kNV; ++v) {
        __m256 x = _mm256_mul_ps(_mm256_add_ps(_mm256_cvtepi32_ps(acc[r][v]), bias[v]), mult[v]);
        x = _mm256_min_ps(_mm256_max_ps(x, lim_lo), lim_hi);
        q[v] = _mm256_add_epi32(_mm256_cvtps_epi32(x), zp);
        q[v] = _mm256_min_epi32(_mm256_max_epi32(q[v], lo), hi);
      }
      // int32 in 0..255, columns 0-7 and 8-15 -> int16 0-3 8-11 | 4-7 12-15 ->
      // (vpermq) 0..15 -> 16 bytes in column order.
      const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xD8);
      const __m128i b = _mm_packus_epi16(_mm256_castsi256_si128(w16),
                                         _mm256_extracti128_si256(w16, 1));
      store_bytes(c + r * c_stride + n0, nn, b);
    }
  }
};

struct Dequant {
  const DequantEpilogue* ep;
  float* c;
  size_t c_stride;

  template <size_t M>
  NPQ_INLINE void store(size_t n0, size_t nn, const __m256i (&acc)[M][kNV]) const {
    __m256 ws[kNV], bias[kNV];
    __m256i mask[kNV];
    for (size_t v = 0; v < kNV; ++v) {
      ws[v] = _mm256_loadu_ps(ep->w_scale + n0 + 8 * v);
      bias[v] = _mm256_loadu_ps(ep->bias + n0 + 8 * v);
      mask[v] = lane_mask(nn > 8 * v ? nn - 8 * v : 0);
    }
    for (size_t r = 0; r < M; ++r) {
      const __m256 as = _mm256_set1_ps(ep->a_scale[r]);
      float* cr = reinterpret_cast<float*>(reinterpret_cast<char*>(c) + r * c_stride) + n0;
      for (size_t v = 0; v < kNV; ++v) {
        const __m256 s = _mm256_mul_ps(as, ws[v]);
        const __m256 y = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][v]), s), bias[v]);
        if (nn == kNR) _mm256_storeu_ps(cr + 8 * v, y);
        else _mm256_maskstore_ps(cr + 8 * v, mask[v], y);
      }
    }
  }
};

template <size_t M, class Out>
void gemm_rows(size_t nc, size_t kp, const uint8_t* a, size_t a_stride, const void* w,
               const int32_t* a_zp, const Out& out) {
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
  static_assert(kMR == 4, "the switch below covers 1..kMR rows");
  switch (mr) {
    case 1: return gemm_rows<1>(nc, kp, a, a_stride, w, a_zp, out);
    case 2: return gemm_rows<2>(nc, kp, a, a_stride, w, a_zp, out);
    case 3: return gemm_rows<3>(nc, kp, a, a_stride, w, a_zp, out);
    default: return gemm_rows<kMR>(nc, kp, a, a_stride, w, a_zp, out);
  }
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
