// Advanced SIMD min/max (with NaN/Inf detection) and quantize (fp32 -> u8).
#include <arm_neon.h>

#include <cmath>
#include <cstring>

#include "../ukernel.h"

namespace npq {
namespace {

// FMIN/FMAX (unlike FMINNM/FMAXNM) return NaN when either input is NaN, and
// the across-vector FMINV/FMAXV do the same, so one NaN anywhere makes both
// results NaN and an infinity makes one of them infinite: the finiteness of
// the two results is the finiteness of the input, with no extra pass.
struct MinMax {
  float32x4_t lo, hi;
  void add(float32x4_t v) {
    lo = vminq_f32(lo, v);
    hi = vmaxq_f32(hi, v);
  }
};

// 16 values: q = sat_u8(FCVTNS(fmaf(x, inv_scale, zp))). FMLA is fmaf (one
// rounding) and FCVTNS rounds half to even, saturating to int32 (NaN -> 0),
// so with the saturating narrowings this is quantize_one's
// clamp(nearbyint(fmaf(x, inv, zp)), 0, 255) for every input.
void quantize16(const float* x, float32x4_t inv, float32x4_t zp, uint8_t* q) {
  int32x4_t r[4];
  for (size_t v = 0; v < 4; ++v) r[v] = vcvtnq_s32_f32(vfmaq_f32(zp, vld1q_f32(x + 4 * v), inv));
  const uint16x8_t h0 = vcombine_u16(vqmovun_s32(r[0]), vqmovun_s32(r[1]));
  const uint16x8_t h1 = vcombine_u16(vqmovun_s32(r[2]), vqmovun_s32(r[3]));
  vst1q_u8(q, vcombine_u8(vqmovn_u16(h0), vqmovn_u16(h1)));
}

}  // namespace

bool f32_minmax__neon(size_t n, const float* x, float* out_min, float* out_max) {
  // Four independent accumulators hide the FMIN/FMAX latency.
  MinMax m[4];
  for (MinMax& mm : m) mm.lo = mm.hi = vdupq_n_f32(x[0]);
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (size_t v = 0; v < 4; ++v) m[v].add(vld1q_f32(x + i + 4 * v));
  for (; i + 4 <= n; i += 4) m[0].add(vld1q_f32(x + i));
  for (; i < n; ++i) m[0].add(vdupq_n_f32(x[i]));
  for (size_t v = 1; v < 4; ++v) {
    m[0].lo = vminq_f32(m[0].lo, m[v].lo);
    m[0].hi = vmaxq_f32(m[0].hi, m[v].hi);
  }
  const float lo = vminvq_f32(m[0].lo), hi = vmaxvq_f32(m[0].hi);
  *out_min = lo;
  *out_max = hi;
  return std::isfinite(lo) && std::isfinite(hi);
}

void f32_qu8_quantize__neon(size_t n, const float* x, float inv_scale, int32_t zp, uint8_t* q) {
  const float32x4_t inv = vdupq_n_f32(inv_scale);
  const float32x4_t vzp = vdupq_n_f32(static_cast<float>(zp));
  size_t i = 0;
  for (; i + 16 <= n; i += 16) quantize16(x + i, inv, vzp, q + i);
  if (i < n) {  // the tail through a zero-padded copy: no read or write past n
    float xt[16] = {0};
    uint8_t qt[16];
    std::memcpy(xt, x + i, (n - i) * sizeof(float));
    quantize16(xt, inv, vzp, qt);
    std::memcpy(q + i, qt, n - i);
  }
}

}  // namespace npq
