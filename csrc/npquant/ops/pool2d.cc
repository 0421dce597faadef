#include "pool2d.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "../dispatch.h"
#include "threadpool.h"

namespace npq {

namespace {

// Runs row(n, oy) for every output row, in parallel when there is enough work.
template <class Row>
void for_rows(const Pool2dGeometry& g, const Row& row) {
  const size_t rows = g.batch * g.oh;
  const size_t work = rows * g.ow * g.c * g.kh * g.kw;
  if (work < (size_t{1} << 18)) {
    for (size_t r = 0; r < rows; ++r) row(r / g.oh, r % g.oh);
    return;
  }
  const size_t per_task = std::max<size_t>(1, (size_t{1} << 16) / std::max<size_t>(1, work / rows));
  parallel_for((rows + per_task - 1) / per_task, [&](size_t t) {
    for (size_t r = t * per_task; r < std::min(rows, (t + 1) * per_task); ++r)
      row(r / g.oh, r % g.oh);
  });
}

// The real input rows (or columns) a window starting at `start` touches: taps
// start + i * dil for i in [i0, i1).
struct Taps {
  size_t i0, i1;
};
Taps taps(long start, size_t k, size_t dil, size_t n) {
  size_t i0 = 0, i1 = k;
  while (i0 < k && start + static_cast<long>(i0 * dil) < 0) ++i0;
  while (i1 > i0 && start + static_cast<long>((i1 - 1) * dil) >= static_cast<long>(n)) --i1;
  return {i0, i1};
}

// Per output column: its first input column (may be negative) and its real taps.
struct Column {
  long x0;
  Taps t;
};
std::vector<Column> columns(const Pool2dGeometry& g, size_t dil) {
  std::vector<Column> cols(g.ow);
  for (size_t ox = 0; ox < g.ow; ++ox) {
    cols[ox].x0 = static_cast<long>(ox * g.stride_w) - static_cast<long>(g.pad_w);
    cols[ox].t = taps(cols[ox].x0, g.kw, dil, g.w);
  }
  return cols;
}

// nearbyint for |v| < 2^22 in the default rounding mode (ties to even), without
// a libm call (the base x86-64 target has no SSE4.1 roundss): adding and
// subtracting 1.5 * 2^23 leaves v rounded to an integer. Callers clamp first.
inline float round_even(float v) {
  constexpr float kMagic = 12582912.0f;
  return (v + kMagic) - kMagic;
}

// clamp(round(v) + zp, lo, hi), v clamped to +-2^21 first (beyond it the clamp
// to [lo, hi] decides anyway).
inline float to_code(float v, float zp, float lo, float hi) {
  v = std::min(std::max(v, -2097152.0f), 2097152.0f);
  return std::min(std::max(round_even(v) + zp, lo), hi);
}

}  // namespace

// out[c] = max(out[c], in[c]): restrict-qualified so the compiler vectorizes it
// (byte pointers may otherwise alias anything).
template <class T>
inline void max_into(T* __restrict__ out, const T* __restrict__ in, size_t c) {
  for (size_t i = 0; i < c; ++i) out[i] = std::max(out[i], in[i]);
}

// Every window's taps, one output row at a time: ind gets ow * kh * kw row pointers
// (pixel-major); a tap in the padding points at `pad`, a row of c bytes of the type's
// lowest code (the identity of max).
template <class T, class Row>
void max_pool_rows(const Pool2dGeometry& g, const T* x, const T* pad, const Row& row) {
  const std::vector<Column> cols = columns(g, g.dil_w);
  const size_t ks = g.kh * g.kw;
  for_rows(g, [&](size_t n, size_t oy) {
    const long y0 = static_cast<long>(oy * g.stride_h) - static_cast<long>(g.pad_h);
    const Taps ty = taps(y0, g.kh, g.dil_h, g.h);
    std::vector<const T*> ind(g.ow * ks, pad);
    for (size_t ox = 0; ox < g.ow; ++ox) {
      const long x0 = cols[ox].x0;
      const Taps tx = cols[ox].t;
      const T** taps_ox = ind.data() + ox * ks;
      for (size_t i = ty.i0; i < ty.i1; ++i) {
        // the window's first column may be padding (x0 < 0): pixel offsets stay
        // signed until a real tap's is formed
        const long pixel0 = static_cast<long>((n * g.h + (y0 + i * g.dil_h)) * g.w) + x0;
        for (size_t j = tx.i0; j < tx.i1; ++j)
          taps_ox[i * g.kw + j] =
              x + static_cast<size_t>(pixel0 + static_cast<long>(j * g.dil_w)) * g.c;
      }
    }
    row(ind.data(), n, oy);
  });
}

template <class T>
void max_pool2d_nhwc(const Pool2dGeometry& g, const T* x, T* y) {
  const std::vector<T> pad(g.c, std::numeric_limits<T>::min());
  const size_t ks = g.kh * g.kw;
  max_pool_rows(g, x, pad.data(), [&](const T* const* ind, size_t n, size_t oy) {
    T* out = y + (n * g.oh + oy) * g.ow * g.c;
    if constexpr (std::is_same<T, uint8_t>::value) {
      kernels().maxpool.maxpool(g.ow, ks, ind, g.c, out);  // ukernels/u8-maxpool-*.cc
    } else {
      for (size_t ox = 0; ox < g.ow; ++ox, out += g.c, ind += ks) {
        std::copy(ind[0], ind[0] + g.c, out);
        for (size_t t = 1; t < ks; ++t) max_into(out, ind[t], g.c);
      }
    }
  });
}

// PyTorch's vector loop (requantize_from_int): zp added after rounding.
template <class T>
inline void round_vector_loop(T* __restrict__ out, const int32_t* __restrict__ acc, size_t n,
                              float m, float zp, float lo, float hi) {
  for (size_t c = 0; c < n; ++c)
    out[c] = static_cast<T>(to_code(static_cast<float>(acc[c]) * m, zp, lo, hi));
}

// PyTorch's scalar loop (quantize_val): zp inside the fma, emulated in float64
// exactly as pooling.py's fma_round.
template <class T>
inline void round_scalar_loop(T* __restrict__ out, const int32_t* __restrict__ acc, size_t n,
                              double inv, int32_t zp, float lo, float hi) {
  for (size_t c = 0; c < n; ++c)
    out[c] = static_cast<T>(
        to_code(static_cast<float>(static_cast<double>(acc[c]) * inv + zp), 0.0f, lo, hi));
}

template <class T>
inline void add_into(int32_t* __restrict__ acc, const T* __restrict__ in, size_t c) {
  for (size_t i = 0; i < c; ++i) acc[i] += in[i];
}

template <class T>
void avg_pool2d_nhwc(const Pool2dGeometry& g, const AvgPool2dArgs& a, const T* x, T* y) {
  const std::vector<Column> cols = columns(g, 1);
  const float zp = static_cast<float>(a.zp), lo = static_cast<float>(a.qmin),
              hi = static_cast<float>(a.qmax);
  for_rows(g, [&](size_t n, size_t oy) {
    std::vector<int32_t> acc(g.c);
    const long y0 = static_cast<long>(oy * g.stride_h) - static_cast<long>(g.pad_h);
    const Taps ty = taps(y0, g.kh, 1, g.h);
    for (size_t ox = 0; ox < g.ow; ++ox) {
      const long x0 = cols[ox].x0;
      const Taps tx = cols[ox].t;
      const size_t p = oy * g.ow + ox;
      std::fill(acc.begin(), acc.end(), -a.zp * a.size[p]);
      for (size_t i = ty.i0; i < ty.i1; ++i)
        for (size_t j = tx.i0; j < tx.i1; ++j)
          add_into(acc.data(), x + ((n * g.h + (y0 + i)) * g.w + (x0 + j)) * g.c, g.c);
      T* out = y + ((n * g.oh + oy) * g.ow + ox) * g.c;
      const float m = a.mult[p];
      const size_t cv = std::min(a.vector_channels, g.c);
      round_vector_loop(out, acc.data(), cv, m, zp, lo, hi);
      round_scalar_loop(out + cv, acc.data() + cv, g.c - cv, a.inv[p], a.zp, lo, hi);
    }
  });
}

template <class T>
void adaptive_avg_pool2d_nhwc(const Pool2dGeometry& g, const AdaptiveAvgPool2dArgs& a, const T* x,
                              T* y) {
  const float lo = static_cast<float>(a.qmin), hi = static_cast<float>(a.qmax);
  for_rows(g, [&](size_t n, size_t oy) {
    std::vector<int32_t> acc(g.c);
    const size_t y0 = static_cast<size_t>(a.hs[oy]), y1 = static_cast<size_t>(a.he[oy]);
    for (size_t ox = 0; ox < g.ow; ++ox) {
      const size_t x0 = static_cast<size_t>(a.ws[ox]), x1 = static_cast<size_t>(a.we[ox]);
      const size_t p = oy * g.ow + ox;
      std::fill(acc.begin(), acc.end(), -a.zp * static_cast<int32_t>((y1 - y0) * (x1 - x0)));
      for (size_t i = y0; i < y1; ++i) {
        const T* row = x + ((n * g.h + i) * g.w) * g.c;
        for (size_t j = x0; j < x1; ++j) add_into(acc.data(), row + j * g.c, g.c);
      }
      round_scalar_loop(y + ((n * g.oh + oy) * g.ow + ox) * g.c, acc.data(), g.c, a.inv[p], a.zp,
                        lo, hi);
    }
  });
}

template void max_pool2d_nhwc<uint8_t>(const Pool2dGeometry&, const uint8_t*, uint8_t*);
template void max_pool2d_nhwc<int8_t>(const Pool2dGeometry&, const int8_t*, int8_t*);
template void avg_pool2d_nhwc<uint8_t>(const Pool2dGeometry&, const AvgPool2dArgs&, const uint8_t*,
                                       uint8_t*);
template void avg_pool2d_nhwc<int8_t>(const Pool2dGeometry&, const AvgPool2dArgs&, const int8_t*,
                                      int8_t*);

template void adaptive_avg_pool2d_nhwc<uint8_t>(const Pool2dGeometry&, const AdaptiveAvgPool2dArgs&,
                                                const uint8_t*, uint8_t*);
template void adaptive_avg_pool2d_nhwc<int8_t>(const Pool2dGeometry&, const AdaptiveAvgPool2dArgs&,
                                               const int8_t*, int8_t*);

}  // namespace npq
