// Portable 2x4c4 GEMM: the fallback on every CPU and the model the SIMD
// kernels follow. Layout: PackedLayout{nr=4, kr=4, k_align=4}.
#include <cstring>

#include "../qmath.h"
#include "../ukernel.h"

namespace npq {
namespace {

constexpr size_t kMR = 2, kNR = 4, kKR = 4;

// acc[r][j] for one panel: sum over kp of a[r][k] * w[j][k] - a_zp[r] * colsum[j].
void panel_acc(size_t mr, size_t kp, const uint8_t* a, size_t a_stride, const int8_t* panel,
               const int32_t* a_zp, int32_t acc[kMR][kNR]) {
  int32_t colsum[kNR];
  std::memcpy(colsum, panel, sizeof(colsum));
  const int8_t* w = panel + sizeof(colsum);
  for (size_t r = 0; r < kMR; ++r)
    for (size_t j = 0; j < kNR; ++j) acc[r][j] = 0;
  for (size_t k = 0; k < kp; k += kKR) {
    for (size_t r = 0; r < mr; ++r) {
      const uint8_t* ar = a + r * a_stride + k;
      for (size_t j = 0; j < kNR; ++j) {
        const int8_t* wj = w + j * kKR;
        int32_t s = 0;
        for (size_t i = 0; i < kKR; ++i) s += static_cast<int32_t>(ar[i]) * wj[i];
        // Wrapping add: the true sum fits in int32 (K <= kMaxK), partial sums may not.
        acc[r][j] =
            static_cast<int32_t>(static_cast<uint32_t>(acc[r][j]) + static_cast<uint32_t>(s));
      }
    }
    w += kNR * kKR;
  }
  for (size_t r = 0; r < mr; ++r)
    for (size_t j = 0; j < kNR; ++j)
      acc[r][j] =
          static_cast<int32_t>(static_cast<uint32_t>(acc[r][j]) -
                               static_cast<uint32_t>(a_zp[r]) * static_cast<uint32_t>(colsum[j]));
}

}  // namespace

void qu8_gemm_2x4c4__scalar_requant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                    size_t a_stride, const void* w, const int32_t* a_zp, uint8_t* c,
                                    size_t c_stride, const RequantEpilogue* ep) {
  const int8_t* panel = static_cast<const int8_t*>(w);
  const size_t panel_stride = kNR * sizeof(int32_t) + kp * kNR;
  for (size_t n0 = 0; n0 < nc; n0 += kNR, panel += panel_stride) {
    int32_t acc[kMR][kNR];
    panel_acc(mr, kp, a, a_stride, panel, a_zp, acc);
    const size_t nn = nc - n0 < kNR ? nc - n0 : kNR;
    for (size_t r = 0; r < mr; ++r)
      for (size_t j = 0; j < nn; ++j)
        c[r * c_stride + n0 + j] = requant_one(acc[r][j], ep->bias_s[n0 + j], ep->mult[n0 + j],
                                               ep->out_zp, ep->out_min, ep->out_max);
  }
}

void qu8_gemm_2x4c4__scalar_dequant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                    size_t a_stride, const void* w, const int32_t* a_zp, float* c,
                                    size_t c_stride, const DequantEpilogue* ep) {
  const int8_t* panel = static_cast<const int8_t*>(w);
  const size_t panel_stride = kNR * sizeof(int32_t) + kp * kNR;
  for (size_t n0 = 0; n0 < nc; n0 += kNR, panel += panel_stride) {
    int32_t acc[kMR][kNR];
    panel_acc(mr, kp, a, a_stride, panel, a_zp, acc);
    const size_t nn = nc - n0 < kNR ? nc - n0 : kNR;
    for (size_t r = 0; r < mr; ++r) {
      float* cr = reinterpret_cast<float*>(reinterpret_cast<char*>(c) + r * c_stride);
      for (size_t j = 0; j < nn; ++j)
        cr[n0 + j] = dequant_one(acc[r][j], ep->a_scale[r], ep->w_scale[n0 + j], ep->bias[n0 + j]);
    }
  }
}

}  // namespace npq
