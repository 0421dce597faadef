// Portable depthwise convolution: the fallback on every CPU and the model the
// SIMD kernels follow. Channel tile 1, taps one at a time (G = 1, nq = kw).
//   packed, per channel: int32 wsum, then w[ky][kx] (kh*kw int8)
//   transformed row: t[(ox*kw + kx)*C + c] = input column ox*stride - pad_left + kx*dil
#include <cstring>

#include "../qmath.h"
#include "../ukernel.h"

namespace npq {

void qu8_dwconv_1c1__scalar_pack(size_t channels, size_t kh, size_t kw, const int8_t* w,
                                 void* packed) {
  uint8_t* p = static_cast<uint8_t*>(packed);
  const size_t taps = kh * kw;
  for (size_t c = 0; c < channels; ++c, p += 4 + taps) {
    int32_t sum = 0;
    for (size_t t = 0; t < taps; ++t) sum += w[c * taps + t];
    std::memcpy(p, &sum, 4);
    std::memcpy(p + 4, w + c * taps, taps);
  }
}

void qu8_dwconv_1c1__scalar_transform(const DwRowGeometry* g, const uint8_t* x_row, uint8_t xz,
                                      uint8_t* t) {
  const size_t c = g->channels;
  for (size_t ox = 0; ox < g->ow; ++ox)
    for (size_t kx = 0; kx < g->kw; ++kx, t += c) {
      // Unsigned wrap-around makes columns left of the row huge, so one compare suffices.
      const size_t ix = ox * g->stride + kx * g->dil - g->pad_left;
      if (x_row && ix < g->w)
        std::memcpy(t, x_row + ix * c, c);
      else
        std::memset(t, xz, c);
    }
}

void qu8_dwconv_1c1__scalar_row(size_t channels, size_t ow, size_t kh, size_t nq,
                                const uint8_t* const* t_rows, const void* packed, int32_t xz,
                                uint8_t* y, size_t y_stride, const RequantEpilogue* ep) {
  const size_t taps = kh * nq, block = 4 + taps;
  const uint8_t* pw = static_cast<const uint8_t*>(packed);
  for (size_t ox = 0; ox < ow; ++ox) {
    for (size_t c = 0; c < channels; ++c) {
      const uint8_t* b = pw + c * block;
      int32_t wsum;
      std::memcpy(&wsum, b, 4);
      const int8_t* w = reinterpret_cast<const int8_t*>(b + 4);
      // Wrapping arithmetic: the true sum fits in int32; partial sums need not.
      uint32_t acc = static_cast<uint32_t>(-xz) * static_cast<uint32_t>(wsum);
      for (size_t ky = 0; ky < kh; ++ky) {
        const uint8_t* tr = t_rows[ky] + ox * nq * channels + c;
        for (size_t kx = 0; kx < nq; ++kx)
          acc += static_cast<uint32_t>(static_cast<int32_t>(tr[kx * channels]) * w[ky * nq + kx]);
      }
      y[ox * y_stride + c] = requant_one(static_cast<int32_t>(acc), ep->bias_s[c], ep->mult[c],
                                         ep->out_zp, ep->out_min, ep->out_max);
    }
  }
}

}  // namespace npq
