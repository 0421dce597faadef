// NEON float32 exp / sigmoid / tanh and the canonical 16-lane sum (four q registers):
// scalar-fmath.h's operations, lane by lane (fmath-coeffs.h has the formulas). vfmaq_f32
// is the fused multiply-add of std::fma; max_ps4 / min_ps4 are x86's maxps / minps (the
// second operand unless the first compares greater / smaller), so clamps treat NaN and
// signed zeros as the reference does. Tails go through padded stack copies (Tail16).
// Internal linkage only (anonymous namespace, always_inline): each ukernel file gets its
// own copy compiled with its own flags (docs/dispatch.md).
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fmath-coeffs.h"

namespace npq {
namespace {

#define NPQ_NINLINE inline __attribute__((always_inline))

NPQ_NINLINE float32x4_t max_ps4(float32x4_t a, float32x4_t b) {
  return vbslq_f32(vcgtq_f32(a, b), a, b);
}
NPQ_NINLINE float32x4_t min_ps4(float32x4_t a, float32x4_t b) {
  return vbslq_f32(vcltq_f32(a, b), a, b);
}

// 2^k per lane for k in [-126, 127].
NPQ_NINLINE float32x4_t pow2_4(int32x4_t k) {
  return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k, vdupq_n_s32(127)), 23));
}

NPQ_NINLINE float32x4_t exp_reduce4(float32x4_t x, int32x4_t* n) {
  const float32x4_t magic = vdupq_n_f32(kRoundMagic);
  const float32x4_t t = vfmaq_f32(magic, x, vdupq_n_f32(kLog2e));
  const float32x4_t nf = vsubq_f32(t, magic);
  float32x4_t r = vfmaq_f32(x, nf, vdupq_n_f32(-kLn2Hi));
  r = vfmaq_f32(r, nf, vdupq_n_f32(-kLn2Lo));
  *n = vsubq_s32(vreinterpretq_s32_f32(t), vreinterpretq_s32_f32(magic));
  return r;
}

NPQ_NINLINE float32x4_t exp_poly4(float32x4_t r) {
  float32x4_t q = vdupq_n_f32(kExpQ[5]);
  for (int i = 4; i >= 0; --i) q = vfmaq_f32(vdupq_n_f32(kExpQ[i]), q, r);
  return q;
}

NPQ_NINLINE float32x4_t exp_nonpos4(float32x4_t x) {
  x = min_ps4(vdupq_n_f32(0.0f), max_ps4(vdupq_n_f32(kExpLo), x));
  int32x4_t n;
  const float32x4_t r = exp_reduce4(x, &n);
  const float32x4_t p = vfmaq_f32(vdupq_n_f32(1.0f), exp_poly4(r), r);
  const int32x4_t n1 = vshrq_n_s32(n, 1);
  const int32x4_t n2 = vsubq_s32(n, n1);
  return vmulq_f32(vmulq_f32(p, pow2_4(n1)), pow2_4(n2));
}

NPQ_NINLINE uint32x4_t sign4() { return vdupq_n_u32(kSignBit); }

NPQ_NINLINE float32x4_t sigmoid4(float32x4_t x) {
  const float32x4_t one = vdupq_n_f32(1.0f);
  const float32x4_t e =
      exp_nonpos4(vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(x), sign4())));
  const uint32x4_t nonneg = vcgeq_f32(x, vdupq_n_f32(0.0f));
  return vdivq_f32(vbslq_f32(nonneg, one, e), vaddq_f32(one, e));
}

NPQ_NINLINE float32x4_t tanh4(float32x4_t x) {
  const uint32x4_t sign = sign4();
  const float32x4_t a = min_ps4(vdupq_n_f32(kTanhClamp),
                                vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(x), sign)));
  int32x4_t n;
  const float32x4_t r = exp_reduce4(vmulq_f32(a, vdupq_n_f32(-2.0f)), &n);
  const float32x4_t m = vmulq_f32(r, exp_poly4(r));
  const float32x4_t s = pow2_4(n);
  const float32x4_t em1 = vfmaq_f32(vsubq_f32(s, vdupq_n_f32(1.0f)), s, m);
  const float32x4_t neg = vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(em1), sign));
  const float32x4_t mag = vdivq_f32(neg, vaddq_f32(vdupq_n_f32(2.0f), em1));
  return vbslq_f32(sign, x, mag);  // x's sign bit, mag's other bits (mag >= +0 or NaN)
}

// The tree that ends the canonical sum (scalar-fmath.h sum16_tree): a[v] holds lanes
// 4v..4v+3.
NPQ_NINLINE float sum16_tree4(const float32x4_t* a) {
  const float32x4_t s4 = vaddq_f32(vaddq_f32(a[0], a[2]), vaddq_f32(a[1], a[3]));
  const float32x2_t s2 = vadd_f32(vget_low_f32(s4), vget_high_f32(s4));
  return vget_lane_f32(s2, 0) + vget_lane_f32(s2, 1);
}

// The last n (< 16) floats of a row, padded with fill to 16 (vector loads of the tail).
struct Tail16 {
  float v[16];
  Tail16(const float* p, size_t n, float fill) {
    for (size_t i = 0; i < 16; ++i) v[i] = i < n ? p[i] : fill;
  }
  float32x4_t q(size_t j) const { return vld1q_f32(v + 4 * j); }
};

}  // namespace
}  // namespace npq
