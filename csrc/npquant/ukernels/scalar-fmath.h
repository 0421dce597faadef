// Scalar float32 exp / sigmoid / tanh and the 16-lane sum of the float kernels
// (fmath-coeffs.h has the formulas): the reference every vector kernel reproduces bit
// for bit. Each line is one IEEE operation of the vector code, in the same order:
// std::fma for vfmadd, max_ps/min_ps for maxps/minps (the second operand unless the
// first compares greater/smaller, so a NaN second operand propagates), integer
// arithmetic on the bits for the exponent.
//
// The canonical sum of n floats (softmax, LayerNorm): lane j (0..15) adds the values
// i = j, j + 16, j + 32, ... in order, starting from +0; then lanes j and j + 8 are
// added, then j and j + 4, j and j + 2, and finally lanes 0 and 1 (sum16_tree). A
// 16-wide vector accumulator (or two 8-wide ones, or four 4-wide) computes exactly
// this, tails padded with +0 (x + 0 = x here: a lane that starts at +0 is never -0).
//
// Internal linkage only (anonymous namespace, always_inline): each ukernel file gets
// its own copy (docs/dispatch.md).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fmath-coeffs.h"

namespace npq {
namespace {

#define NPQ_SCALAR_INLINE inline __attribute__((always_inline))

NPQ_SCALAR_INLINE uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

NPQ_SCALAR_INLINE float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// x86 maxps / minps on one lane.
NPQ_SCALAR_INLINE float max_ps(float a, float b) { return a > b ? a : b; }
NPQ_SCALAR_INLINE float min_ps(float a, float b) { return a < b ? a : b; }

// 2^k for k in [-126, 127], from the exponent bits.
NPQ_SCALAR_INLINE float pow2_bits(uint32_t k) { return f32_from_bits((k + 127u) << 23); }

// Range reduction shared by exp and expm1: r, and n as the low bits of t.
NPQ_SCALAR_INLINE float exp_reduce(float x, uint32_t* n) {
  const float t = std::fma(x, kLog2e, kRoundMagic);
  const float nf = t - kRoundMagic;
  float r = std::fma(nf, -kLn2Hi, x);
  r = std::fma(nf, -kLn2Lo, r);
  *n = f32_bits(t) - f32_bits(kRoundMagic);
  return r;
}

NPQ_SCALAR_INLINE float exp_poly(float r) {
  float q = kExpQ[5];
  for (int i = 4; i >= 0; --i) q = std::fma(q, r, kExpQ[i]);
  return q;
}

// exp(x) for x <= 0 (larger x give 1), NaN for NaN.
NPQ_SCALAR_INLINE float exp_nonpos(float x) {
  x = min_ps(0.0f, max_ps(kExpLo, x));
  uint32_t n;
  const float r = exp_reduce(x, &n);
  const float p = std::fma(exp_poly(r), r, 1.0f);
  // arithmetic shift of the signed n, on the bits (as vpsrad)
  const uint32_t n1 = (n >> 1) | (n & kSignBit);
  const uint32_t n2 = n - n1;
  return (p * pow2_bits(n1)) * pow2_bits(n2);
}

NPQ_SCALAR_INLINE float sigmoid(float x) {
  const float e = exp_nonpos(f32_from_bits(f32_bits(x) | kSignBit));  // exp(-|x|)
  const float num = x >= 0.0f ? 1.0f : e;
  return num / (1.0f + e);
}

NPQ_SCALAR_INLINE float tanh_f32(float x) {
  const float a = min_ps(kTanhClamp, f32_from_bits(f32_bits(x) & ~kSignBit));
  uint32_t n;
  const float r = exp_reduce(a * -2.0f, &n);
  const float m = r * exp_poly(r);
  const float s = pow2_bits(n);
  const float em1 = std::fma(s, m, s - 1.0f);
  const float mag = f32_from_bits(f32_bits(em1) ^ kSignBit) / (2.0f + em1);
  return f32_from_bits((f32_bits(mag) & ~kSignBit) | (f32_bits(x) & kSignBit));
}

// The fixed tree that ends the canonical sum: lanes l[0..15] -> one float.
NPQ_SCALAR_INLINE float sum16_tree(const float* l) {
  float s8[8], s4[4];
  for (int j = 0; j < 8; ++j) s8[j] = l[j] + l[j + 8];
  for (int j = 0; j < 4; ++j) s4[j] = s8[j] + s8[j + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

}  // namespace
}  // namespace npq
