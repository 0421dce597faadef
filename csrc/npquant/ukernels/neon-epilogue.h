// Epilogues of the aarch64 ukernels (GEMM, indirect GEMM, depthwise): int32
// accumulators of one output row -> requantized u8 or dequantized fp32, exactly
// as qmath.cc's requant_one / dequant_one.
//
// Everything here has internal linkage (anonymous namespace), so each ukernel
// file that includes it gets its own copy compiled with its own -march flags:
// no symbol is shared between translation units built for different ISAs.
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../params.h"

namespace npq {
namespace {

// The requantization constants of 4*V consecutive columns, in registers.
// Kernels that requantize many rows against the same columns (depthwise, one
// row per output pixel) load them once: the stores of the u8 outputs may alias
// the epilogue's arrays as far as the compiler knows, so it would reload them.
template <size_t V>
struct RequantConsts {
  float32x4_t bias[V], mult[V];
  int32x4_t zp;
  uint8x8_t lo, hi;
};

template <size_t V>
RequantConsts<V> requant_consts(const RequantEpilogue* ep, size_t n0) {
  RequantConsts<V> k;
  for (size_t v = 0; v < V; ++v) {
    k.bias[v] = vld1q_f32(ep->bias_s + n0 + 4 * v);
    k.mult[v] = vld1q_f32(ep->mult + n0 + 4 * v);
  }
  k.zp = vdupq_n_s32(ep->out_zp);
  k.lo = vdup_n_u8(static_cast<uint8_t>(ep->out_min));
  k.hi = vdup_n_u8(static_cast<uint8_t>(ep->out_max));
  return k;
}

// Requantizes 4*V consecutive columns of one row and stores the first nn bytes.
// Per lane: v = fl(fl(float(acc) + bias_s) * mult) (separate add and multiply:
// the contract has no FMA here), r = round-half-even(v) saturated to int32
// (FCVTNS), q = sat(r + zp), then clamp(q, lo, hi). Saturation instead of
// requant_one's explicit +-2^20 test gives the same bytes: |r| >= 2^20 lands
// beyond [lo, hi] either way, and the narrowing steps saturate to [0, 255],
// inside which clamping to [lo, hi] is what remains.
template <size_t V>
void requant_store(const int32x4_t* acc, const RequantConsts<V>& k, uint8_t* c, size_t nn) {
  constexpr size_t kPairs = (V + 1) / 2;
  uint16x4_t half[2 * kPairs];
  for (size_t v = 0; v < V; ++v) {
    float32x4_t f = vcvtq_f32_s32(acc[v]);
    f = vaddq_f32(f, k.bias[v]);
    f = vmulq_f32(f, k.mult[v]);
    half[v] = vqmovun_s32(vqaddq_s32(vcvtnq_s32_f32(f), k.zp));
  }
  if (V % 2 == 1) half[V] = half[V - 1];  // an odd tail pairs with itself
  uint8x8_t bytes[kPairs];
  for (size_t p = 0; p < kPairs; ++p) {
    const uint8x8_t b = vqmovn_u16(vcombine_u16(half[2 * p], half[2 * p + 1]));
    bytes[p] = vmin_u8(vmax_u8(b, k.lo), k.hi);
  }
  if (V % 2 == 0 && nn == 4 * V) {
    for (size_t p = 0; p < kPairs; ++p) vst1_u8(c + 8 * p, bytes[p]);
    return;
  }
  uint8_t tmp[8 * kPairs];
  for (size_t p = 0; p < kPairs; ++p) vst1_u8(tmp + 8 * p, bytes[p]);
  std::memcpy(c, tmp, nn);
}

// requant_store with the constants of columns n0 .. n0 + 4V - 1.
template <size_t V>
void requant_row(const int32x4_t* acc, const RequantEpilogue* ep, size_t n0, uint8_t* c,
                 size_t nn) {
  requant_store<V>(acc, requant_consts<V>(ep, n0), c, nn);
}

// Dequantizes 4*V consecutive columns of row r and stores the first nn floats:
// y = fl(fl(float(acc) * fl(a_scale[r] * w_scale[n])) + bias[n]), no FMA.
template <size_t V>
void dequant_row(const int32x4_t* acc, const DequantEpilogue* ep, size_t r, size_t n0, float* c,
                 size_t nn) {
  const float as = ep->a_scale[r];
  float32x4_t y[V];
  for (size_t v = 0; v < V; ++v) {
    const float32x4_t s = vmulq_n_f32(vld1q_f32(ep->w_scale + n0 + 4 * v), as);
    y[v] = vaddq_f32(vmulq_f32(vcvtq_f32_s32(acc[v]), s), vld1q_f32(ep->bias + n0 + 4 * v));
  }
  if (nn == 4 * V) {
    for (size_t v = 0; v < V; ++v) vst1q_f32(c + 4 * v, y[v]);
    return;
  }
  float tmp[4 * V];
  for (size_t v = 0; v < V; ++v) vst1q_f32(tmp + 4 * v, y[v]);
  std::memcpy(c, tmp, nn * sizeof(float));
}

// Row r of C (c_stride in bytes).
template <class T>
T* row_ptr(T* c, size_t r, size_t c_stride) {
  return reinterpret_cast<T*>(reinterpret_cast<char*>(c) + r * c_stride);
}

}  // namespace
}  // namespace npq
