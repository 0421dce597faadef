// The reference float32 GEMM tile (ukernel.h f32_gemm_fn): every output is one fma
// chain over k in order, from 0, then + bias. Every other f32-gemm kernel, whatever
// its tile, computes these bits. std::fma is one instruction on aarch64 and a libm
// call on x86 without FMA (the fallback only).
#include <cmath>
#include <cstddef>

#include "../ukernel.h"

namespace npq {

void f32_gemm_4x8__scalar(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                          const float* b, size_t b_stride, const float* bias, float* c,
                          size_t c_stride) {
  float acc[4][8] = {};
  for (size_t k = 0; k < kc; ++k)
    for (size_t r = 0; r < mr; ++r) {
      const float av = a[r * a_stride + k];
      for (size_t j = 0; j < nc; ++j) acc[r][j] = std::fma(av, b[k * b_stride + j], acc[r][j]);
    }
  for (size_t r = 0; r < mr; ++r)
    for (size_t j = 0; j < nc; ++j) c[r * c_stride + j] = bias ? acc[r][j] + bias[j] : acc[r][j];
}

}  // namespace npq
