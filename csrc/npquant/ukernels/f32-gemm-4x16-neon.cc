// NEON float32 GEMM tile, 4 rows x 16 columns (ukernel.h f32_gemm_fn): per k, four q
// registers of B's row, one broadcast of A per row, 16 vfmaq_f32 into 16 accumulators,
// so each output is the fma chain over k in order of f32-gemm-4x8-scalar.cc. A partial
// panel (nc < 16) loads and stores its last vector lane by lane.
#include <arm_neon.h>

#include "../ukernel.h"
#include "neon-fmath.h"

namespace npq {
namespace {

// Columns [4v, 4v + 4) of a row of nc: whole, or lane by lane (zeros past nc).
NPQ_NINLINE float32x4_t load_cols(const float* p, size_t v, size_t nc) {
  if (4 * v + 4 <= nc) return vld1q_f32(p + 4 * v);
  float t[4] = {};
  for (size_t i = 4 * v; i < nc; ++i) t[i - 4 * v] = p[i];
  return vld1q_f32(t);
}

NPQ_NINLINE void store_cols(float* p, size_t v, size_t nc, float32x4_t x) {
  if (4 * v + 4 <= nc) return vst1q_f32(p + 4 * v, x);
  float t[4];
  vst1q_f32(t, x);
  for (size_t i = 4 * v; i < nc; ++i) p[i] = t[i - 4 * v];
}

template <int MR, bool kFull>
NPQ_NINLINE void tile(size_t nc, size_t kc, const float* a, size_t as, const float* b, size_t bs,
                      const float* bias, float* c, size_t cs) {
  const size_t nv = kFull ? 4 : (nc + 3) / 4;
  float32x4_t acc[MR][4];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 4; ++v) acc[r][v] = vdupq_n_f32(0.0f);
  for (size_t k = 0; k < kc; ++k) {
    const float* bk = b + k * bs;
    float32x4_t bv[4];
    for (size_t v = 0; v < 4; ++v)
      bv[v] = kFull ? vld1q_f32(bk + 4 * v) : (v < nv ? load_cols(bk, v, nc) : vdupq_n_f32(0.0f));
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      const float32x4_t av = vdupq_n_f32(a[r * as + k]);
      for (int v = 0; v < 4; ++v) acc[r][v] = vfmaq_f32(acc[r][v], av, bv[v]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
    for (size_t v = 0; v < nv; ++v) {
      float32x4_t y = acc[r][v];
      if (bias) y = vaddq_f32(y, load_cols(bias, v, nc));
      store_cols(c + r * cs, v, nc, y);
    }
}

template <bool kFull>
NPQ_NINLINE void rows(size_t mr, size_t nc, size_t kc, const float* a, size_t as, const float* b,
                      size_t bs, const float* bias, float* c, size_t cs) {
  switch (mr) {
    case 1:
      return tile<1, kFull>(nc, kc, a, as, b, bs, bias, c, cs);
    case 2:
      return tile<2, kFull>(nc, kc, a, as, b, bs, bias, c, cs);
    case 3:
      return tile<3, kFull>(nc, kc, a, as, b, bs, bias, c, cs);
    default:
      return tile<4, kFull>(nc, kc, a, as, b, bs, bias, c, cs);
  }
}

}  // namespace

void f32_gemm_4x16__neon(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                         const float* b, size_t b_stride, const float* bias, float* c,
                         size_t c_stride) {
  if (nc == 16)
    rows<true>(mr, nc, kc, a, a_stride, b, b_stride, bias, c, c_stride);
  else
    rows<false>(mr, nc, kc, a, a_stride, b, b_stride, bias, c, c_stride);
}

}  // namespace npq
