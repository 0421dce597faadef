#include <vector>

#include "../qmath.h"
#include "reference.h"

namespace npq {
namespace ref {

namespace {

size_t out_size(size_t in, size_t k, size_t stride, size_t dil, size_t pad0, size_t pad1) {
  return (in + pad0 + pad1 - dil * (k - 1) - 1) / stride + 1;
}

}  // namespace

void conv2d_acc(const ConvGeometry& g, size_t batch, size_t h, size_t w, const uint8_t* x,
                int32_t xz, const int8_t* weight, int32_t* acc) {
  const size_t oh = out_size(h, g.kh, g.stride_h, g.dil_h, g.pad_top, g.pad_bottom);
  const size_t ow = out_size(w, g.kw, g.stride_w, g.dil_w, g.pad_left, g.pad_right);
  const size_t cg = g.in_c / g.groups, og = g.out_c / g.groups;
  for (size_t n = 0; n < batch; ++n)
    for (size_t oy = 0; oy < oh; ++oy)
      for (size_t ox = 0; ox < ow; ++ox)
        for (size_t o = 0; o < g.out_c; ++o) {
          const size_t grp = o / og;
          int64_t s = 0;
          for (size_t c = 0; c < cg; ++c)
            for (size_t ky = 0; ky < g.kh; ++ky)
              for (size_t kx = 0; kx < g.kw; ++kx) {
                // Signed coordinates: negative or >= size means padding.
                const long iy = static_cast<long>(oy * g.stride_h + ky * g.dil_h) -
                                static_cast<long>(g.pad_top);
                const long ix = static_cast<long>(ox * g.stride_w + kx * g.dil_w) -
                                static_cast<long>(g.pad_left);
                if (iy < 0 || ix < 0 || iy >= static_cast<long>(h) || ix >= static_cast<long>(w))
                  continue;  // (xz - xz) * w = 0
                const uint8_t v = x[((n * h + iy) * w + ix) * g.in_c + grp * cg + c];
                const int8_t wt = weight[((o * cg + c) * g.kh + ky) * g.kw + kx];
                s += (static_cast<int64_t>(v) - xz) * wt;
              }
          acc[((n * oh + oy) * ow + ox) * g.out_c + o] = static_cast<int32_t>(s);
        }
}

void conv2d_requant(const ConvGeometry& g, size_t batch, size_t h, size_t w, const uint8_t* x,
                    int32_t xz, const int8_t* weight, const float* bias_s, const float* mult,
                    int32_t out_zp, int32_t out_min, int32_t out_max, uint8_t* y) {
  const size_t oh = out_size(h, g.kh, g.stride_h, g.dil_h, g.pad_top, g.pad_bottom);
  const size_t ow = out_size(w, g.kw, g.stride_w, g.dil_w, g.pad_left, g.pad_right);
  std::vector<int32_t> acc(batch * oh * ow * g.out_c);
  conv2d_acc(g, batch, h, w, x, xz, weight, acc.data());
  for (size_t i = 0; i < acc.size(); ++i) {
    const size_t o = i % g.out_c;
    y[i] = requant_one(acc[i], bias_s[o], mult[o], out_zp, out_min, out_max);
  }
}

}  // namespace ref
}  // namespace npq
