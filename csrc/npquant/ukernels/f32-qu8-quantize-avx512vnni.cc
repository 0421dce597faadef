// AVX-512 min/max and quantize (fp32 -> u8), 64 floats per step.
// quantize: q = clamp(nearbyint(fmaf(x, inv_scale, zp)), 0, 255), exactly as
// qmath.cc's quantize_one: vfmadd is fmaf, the clamp runs in float (so values
// beyond int32 and infinities saturate, NaN maps to 0 like quantize_one's
// `!(v >= 0)` test), and cvtps2dq rounds half to even under the default MXCSR.
#include <immintrin.h>

#include "../ukernel.h"

namespace npq {
namespace {

// Inf and NaN (quiet or signalling) classes of vfpclassps.
constexpr int kNonFinite = 0x01 | 0x08 | 0x10 | 0x80;

inline __mmask16 tail_mask(size_t n) { return static_cast<__mmask16>((1u << n) - 1); }

inline __m512i quantize16(__m512 x, __m512 inv, __m512 zp) {
  // max_ps returns its second operand when the first is NaN: NaN -> 0.
  __m512 v = _mm512_max_ps(_mm512_fmadd_ps(x, inv, zp), _mm512_setzero_ps());
  v = _mm512_min_ps(v, _mm512_set1_ps(255.0f));
  return _mm512_cvtps_epi32(v);
}

}  // namespace

bool f32_minmax__avx512vnni(size_t n, const float* x, float* out_min, float* out_max) {
  __m512 lo0 = _mm512_set1_ps(x[0]), hi0 = lo0, lo1 = lo0, hi1 = lo0;
  __mmask16 bad = 0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
    lo0 = _mm512_min_ps(lo0, a);
    hi0 = _mm512_max_ps(hi0, a);
    lo1 = _mm512_min_ps(lo1, b);
    hi1 = _mm512_max_ps(hi1, b);
    bad |= _mm512_fpclass_ps_mask(a, kNonFinite) | _mm512_fpclass_ps_mask(b, kNonFinite);
  }
  for (; i < n; i += 16) {
    // Masked-off lanes keep the running min/max (and are not classified).
    const __mmask16 m = n - i >= 16 ? 0xFFFF : tail_mask(n - i);
    const __m512 a = _mm512_maskz_loadu_ps(m, x + i);
    lo0 = _mm512_mask_min_ps(lo0, m, lo0, a);
    hi0 = _mm512_mask_max_ps(hi0, m, hi0, a);
    bad |= _mm512_mask_fpclass_ps_mask(m, a, kNonFinite);
  }
  // A plain reduction: GCC 12 warns (-Wuninitialized, its own undefined
  // passthrough operands) on _mm512_reduce_min_ps and a final _mm512_min_ps here.
  float lo[32], hi[32];
  _mm512_storeu_ps(lo, lo0);
  _mm512_storeu_ps(lo + 16, lo1);
  _mm512_storeu_ps(hi, hi0);
  _mm512_storeu_ps(hi + 16, hi1);
  float mn = lo[0], mx = hi[0];
  for (int j = 1; j < 32; ++j) {
    mn = lo[j] < mn ? lo[j] : mn;
    mx = hi[j] > mx ? hi[j] : mx;
  }
  *out_min = mn;
  *out_max = mx;
  return bad == 0;
}

void f32_qu8_quantize__avx512vnni(size_t n, const float* x, float inv_scale, int32_t zp,
                                  uint8_t* q) {
  const __m512 inv = _mm512_set1_ps(inv_scale);
  const __m512 zpf = _mm512_set1_ps(static_cast<float>(zp));
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i q0 = quantize16(_mm512_loadu_ps(x + i), inv, zpf);
    const __m512i q1 = quantize16(_mm512_loadu_ps(x + i + 16), inv, zpf);
    const __m512i q2 = quantize16(_mm512_loadu_ps(x + i + 32), inv, zpf);
    const __m512i q3 = quantize16(_mm512_loadu_ps(x + i + 48), inv, zpf);
    // Values are in 0..255, so the truncating narrow is exact.
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i + 16), _mm512_cvtepi32_epi8(q1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i + 32), _mm512_cvtepi32_epi8(q2));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i + 48), _mm512_cvtepi32_epi8(q3));
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? 0xFFFF : tail_mask(n - i);
    const __m512i v = quantize16(_mm512_maskz_loadu_ps(m, x + i), inv, zpf);
    _mm512_mask_cvtepi32_storeu_epi8(q + i, m, v);
  }
}

}  // namespace npq
