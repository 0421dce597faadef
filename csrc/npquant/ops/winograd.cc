#include "winograd.h"

#include <cstring>

namespace npq {

namespace {

// G' = 2G (integer): rows of the transform applied to each side of the filter.
constexpr int32_t kG2[4][3] = {{2, 0, 0}, {1, 1, 1}, {1, -1, 1}, {0, 0, 2}};

// The largest |acc| the shift recovers: 4 * acc must fit int32.
constexpr int64_t kMaxAcc = (int64_t{1} << 29) - 1;

}  // namespace

bool winograd_geometry(const ConvGeometry& g) {
  return g.kh == 3 && g.kw == 3 && g.stride_h == 1 && g.stride_w == 1 && g.dil_h == 1 &&
         g.dil_w == 1 && g.groups == 1;
}

bool winograd_exact(const int8_t* w, size_t out_c, size_t k) {
  for (size_t o = 0; o < out_c; ++o) {
    int64_t s = 0;
    for (size_t i = 0; i < k; ++i) s += w[o * k + i] < 0 ? -int64_t{w[o * k + i]} : w[o * k + i];
    if (255 * s > kMaxAcc) return false;
  }
  return true;
}

WinogradWeights::WinogradWeights(const int8_t* w, size_t out_c, size_t cg, size_t nr, size_t kr)
    : nr_(nr), kc_(round_up(cg, kr)), panels_((out_c + nr - 1) / nr) {
  panel_bytes_ = 16 * kc_ * nr * sizeof(int16_t);
  data_ = aligned_zeros(bytes());
  int16_t* u = reinterpret_cast<int16_t*>(data_.get());
  for (size_t o = 0; o < out_c; ++o)
    for (size_t c = 0; c < cg; ++c) {
      const int8_t* g = w + (o * cg + c) * 9;  // g[ky * 3 + kx]
      int32_t t[4][3];                         // G' g
      for (size_t i = 0; i < 4; ++i)
        for (size_t b = 0; b < 3; ++b)
          t[i][b] = kG2[i][0] * g[b] + kG2[i][1] * g[3 + b] + kG2[i][2] * g[6 + b];
      int16_t* panel = u + (o / nr) * (panel_bytes_ / sizeof(int16_t));
      for (size_t i = 0; i < 4; ++i)
        for (size_t j = 0; j < 4; ++j) {
          // |U| <= 9 * 128 = 1152.
          const int32_t v = t[i][0] * kG2[j][0] + t[i][1] * kG2[j][1] + t[i][2] * kG2[j][2];
          panel[(4 * i + j) * kc_ * nr + (c / kr) * nr * kr + (o % nr) * kr + c % kr] =
              static_cast<int16_t>(v);
        }
    }
}

}  // namespace npq
