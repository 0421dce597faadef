// AVX2 min/max and quantize (fp32 -> u8), 32 floats per step.
// quantize: q = clamp(nearbyint(fmaf(x, inv_scale, zp)), 0, 255), exactly as
// qmath.cc's quantize_one: vfmadd is fmaf, the clamp runs in float (so values
// beyond int32 and infinities saturate, NaN maps to 0 like quantize_one's
// `!(v >= 0)` test), and cvtps2dq rounds half to even under the default MXCSR.
#include <immintrin.h>

#include <cstring>

#include "../ukernel.h"
#include "avx2-util.h"

namespace npq {
namespace {

inline __m256i quantize8(__m256 x, __m256 inv, __m256 zp) {
  // max_ps returns its second operand when the first is NaN: NaN -> 0.
  __m256 v = _mm256_max_ps(_mm256_fmadd_ps(x, inv, zp), _mm256_setzero_ps());
  v = _mm256_min_ps(v, _mm256_set1_ps(255.0f));
  return _mm256_cvtps_epi32(v);
}

// Four vectors of int32 in 0..255 -> 32 bytes in order.
inline __m256i narrow32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b);  // a0-3 b0-3 | a4-7 b4-7
  const __m256i cd = _mm256_packs_epi32(c, d);
  const __m256i x = _mm256_packus_epi16(ab, cd);  // a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7
  return _mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

}  // namespace

bool f32_minmax__avx2(size_t n, const float* x, float* out_min, float* out_max) {
  __m256 lo0 = _mm256_set1_ps(x[0]), hi0 = lo0, lo1 = lo0, hi1 = lo0;
  // x - x is 0 for finite x and NaN for NaN or Inf; NaN survives the sums.
  __m256 nf0 = _mm256_setzero_ps(), nf1 = nf0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    lo0 = _mm256_min_ps(lo0, a);
    hi0 = _mm256_max_ps(hi0, a);
    lo1 = _mm256_min_ps(lo1, b);
    hi1 = _mm256_max_ps(hi1, b);
    nf0 = _mm256_add_ps(nf0, _mm256_sub_ps(a, a));
    nf1 = _mm256_add_ps(nf1, _mm256_sub_ps(b, b));
  }
  for (; i < n; i += 8) {
    // Masked-off lanes read as 0, so they are replaced by x[0] (already counted).
    const __m256i m = lane_mask(n - i);
    const __m256 a = _mm256_blendv_ps(_mm256_set1_ps(x[0]), _mm256_maskload_ps(x + i, m),
                                      _mm256_castsi256_ps(m));
    lo0 = _mm256_min_ps(lo0, a);
    hi0 = _mm256_max_ps(hi0, a);
    nf0 = _mm256_add_ps(nf0, _mm256_sub_ps(a, a));
  }
  lo0 = _mm256_min_ps(lo0, lo1);
  hi0 = _mm256_max_ps(hi0, hi1);
  nf0 = _mm256_add_ps(nf0, nf1);
  float lo[8], hi[8], nf[8];
  _mm256_storeu_ps(lo, lo0);
  _mm256_storeu_ps(hi, hi0);
  _mm256_storeu_ps(nf, nf0);
  float mn = lo[0], mx = hi[0], bad = 0.0f;
  for (int j = 0; j < 8; ++j) {
    mn = lo[j] < mn ? lo[j] : mn;
    mx = hi[j] > mx ? hi[j] : mx;
    bad += nf[j];
  }
  *out_min = mn;
  *out_max = mx;
  return bad == 0.0f;
}

void f32_qu8_quantize__avx2(size_t n, const float* x, float inv_scale, int32_t zp, uint8_t* q) {
  const __m256 inv = _mm256_set1_ps(inv_scale);
  const __m256 zpf = _mm256_set1_ps(static_cast<float>(zp));
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i q0 = quantize8(_mm256_loadu_ps(x + i), inv, zpf);
    const __m256i q1 = quantize8(_mm256_loadu_ps(x + i + 8), inv, zpf);
    const __m256i q2 = quantize8(_mm256_loadu_ps(x + i + 16), inv, zpf);
    const __m256i q3 = quantize8(_mm256_loadu_ps(x + i + 24), inv, zpf);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), narrow32(q0, q1, q2, q3));
  }
  if (i == n) return;
  // Tail of 1..31: masked loads (masked-off lanes read 0), then copy what is valid.
  __m256i v[4];
  for (size_t j = 0; j < 4; ++j) {
    const size_t start = i + 8 * j;
    const __m256i m = lane_mask(start < n ? n - start : 0);
    v[j] = quantize8(_mm256_maskload_ps(x + (start < n ? start : i), m), inv, zpf);
  }
  uint8_t buf[32];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(buf), narrow32(v[0], v[1], v[2], v[3]));
  std::memcpy(q + i, buf, n - i);
}

}  // namespace npq
