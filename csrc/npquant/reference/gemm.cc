#include <vector>

#include "../qmath.h"
#include "reference.h"

namespace npq {
namespace ref {

void qgemm_acc(size_t M, size_t N, size_t K, const uint8_t* a, size_t a_stride, const int32_t* a_zp,
               const int8_t* w, size_t w_stride, int32_t* acc) {
  for (size_t m = 0; m < M; ++m) {
    for (size_t n = 0; n < N; ++n) {
      int64_t s = 0;
      for (size_t k = 0; k < K; ++k)
        s += (static_cast<int64_t>(a[m * a_stride + k]) - a_zp[m]) * w[n * w_stride + k];
      acc[m * N + n] = static_cast<int32_t>(s);
    }
  }
}

void qgemm_requant(size_t M, size_t N, size_t K, const uint8_t* a, size_t a_stride, int32_t a_zp,
                   const int8_t* w, size_t w_stride, const float* bias_s, const float* mult,
                   int32_t out_zp, int32_t out_min, int32_t out_max, uint8_t* c, size_t c_stride) {
  std::vector<int32_t> zp(M, a_zp), acc(M * N);
  qgemm_acc(M, N, K, a, a_stride, zp.data(), w, w_stride, acc.data());
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n)
      c[m * c_stride + n] =
          requant_one(acc[m * N + n], bias_s[n], mult[n], out_zp, out_min, out_max);
}

void qgemm_dequant(size_t M, size_t N, size_t K, const uint8_t* a, size_t a_stride,
                   const int32_t* a_zp, const float* a_scale, const int8_t* w, size_t w_stride,
                   const float* w_scale, const float* bias, float* c, size_t c_stride) {
  std::vector<int32_t> acc(M * N);
  qgemm_acc(M, N, K, a, a_stride, a_zp, w, w_stride, acc.data());
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n)
      c[m * c_stride + n] =
          dequant_one(acc[m * N + n], a_scale[m], w_scale[n], bias ? bias[n] : 0.0f);
}

}  // namespace ref
}  // namespace npq
