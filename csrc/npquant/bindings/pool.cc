// Pooling bindings: quantized max / average pooling on NHWC codes. The Python
// layer (nn/quantized/pooling.py) computes the geometry and the per-position
// constants; this layer checks them against the arrays and releases the GIL.
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <tuple>

#include "../ops/pool2d.h"
#include "common.h"

namespace npq_bind {

namespace {

using Pair = std::tuple<long, long>;

npq::Pool2dGeometry geometry(const py::array& x, Pair out_hw, Pair kernel, Pair stride,
                             Pair padding, Pair dilation) {
  npq::Pool2dGeometry g{};
  g.batch = x.shape(0);
  g.h = x.shape(1);
  g.w = x.shape(2);
  g.c = x.shape(3);
  g.oh = at_least(1, std::get<0>(out_hw), "output height");
  g.ow = at_least(1, std::get<1>(out_hw), "output width");
  g.kh = at_least(1, std::get<0>(kernel), "kernel height");
  g.kw = at_least(1, std::get<1>(kernel), "kernel width");
  g.stride_h = at_least(1, std::get<0>(stride), "stride");
  g.stride_w = at_least(1, std::get<1>(stride), "stride");
  g.pad_h = at_least(0, std::get<0>(padding), "padding");
  g.pad_w = at_least(0, std::get<1>(padding), "padding");
  g.dil_h = at_least(1, std::get<0>(dilation), "dilation");
  g.dil_w = at_least(1, std::get<1>(dilation), "dilation");
  if (g.h == 0 || g.w == 0) throw ValueError("pooling needs a non-empty spatial input");
  // Every window must start inside the input or its leading padding.
  if ((g.oh - 1) * g.stride_h >= g.h + g.pad_h || (g.ow - 1) * g.stride_w >= g.w + g.pad_w)
    throw ValueError("output size too large for the input, stride and padding");
  return g;
}

template <class T>
py::array_t<T> max_pool(const py::array& x_obj, Pair out_hw, Pair kernel, Pair stride, Pair padding,
                        Pair dilation) {
  auto x = checked<T>(x_obj, "input (NHWC codes)", 4);
  const npq::Pool2dGeometry g = geometry(x, out_hw, kernel, stride, padding, dilation);
  py::array_t<T> y({g.batch, g.oh, g.ow, g.c});
  const T* xd = x.data();
  T* yd = y.mutable_data();
  py::gil_scoped_release nogil;
  npq::max_pool2d_nhwc<T>(g, xd, yd);
  return y;
}

template <class T>
py::array_t<T> avg_pool(const py::array& x_obj, Pair out_hw, Pair kernel, Pair stride, Pair padding,
                        const py::handle& mult_obj, const py::handle& inv_obj,
                        const py::handle& size_obj, int32_t zp, long vector_channels) {
  auto x = checked<T>(x_obj, "input (NHWC codes)", 4);
  const npq::Pool2dGeometry g = geometry(x, out_hw, kernel, stride, padding, Pair{1, 1});
  auto mult = checked<float>(mult_obj, "multipliers", 2);
  auto inv = checked<float>(inv_obj, "scalar-loop multipliers", 2);
  auto size = checked<int32_t>(size_obj, "window sizes", 2);
  for (const py::array* a :
       {static_cast<const py::array*>(&mult), static_cast<const py::array*>(&inv),
        static_cast<const py::array*>(&size)})
    if (static_cast<size_t>(a->shape(0)) != g.oh || static_cast<size_t>(a->shape(1)) != g.ow)
      throw ValueError("per-position arrays must have the output's (height, width)");
  const int32_t qmin = std::is_signed<T>::value ? -128 : 0,
                qmax = std::is_signed<T>::value ? 127 : 255;
  if (zp < qmin || zp > qmax) throw ValueError("zero_point out of the dtype's range");
  const npq::AvgPool2dArgs a{mult.data(),
                             inv.data(),
                             size.data(),
                             zp,
                             qmin,
                             qmax,
                             at_least(0, vector_channels, "vector_channels")};
  py::array_t<T> y({g.batch, g.oh, g.ow, g.c});
  const T* xd = x.data();
  T* yd = y.mutable_data();
  py::gil_scoped_release nogil;
  npq::avg_pool2d_nhwc<T>(g, a, xd, yd);
  return y;
}

// Bin bounds [start, end) of one axis: inside [0, n), non-empty.
void check_bins(const py::array_t<int32_t>& s, const py::array_t<int32_t>& e, size_t o, size_t n,
                const char* what) {
  if (static_cast<size_t>(s.shape(0)) != o || static_cast<size_t>(e.shape(0)) != o)
    throw ValueError(std::string(what) + " bin bounds must have the output's length");
  for (size_t i = 0; i < o; ++i)
    if (s.data()[i] < 0 || e.data()[i] <= s.data()[i] || static_cast<size_t>(e.data()[i]) > n)
      throw ValueError(std::string(what) + " bins must be non-empty and inside the input");
}

template <class T>
py::array_t<T> adaptive_avg_pool(const py::array& x_obj, const py::handle& hs_obj,
                                 const py::handle& he_obj, const py::handle& ws_obj,
                                 const py::handle& we_obj, const py::handle& inv_obj, int32_t zp) {
  auto x = checked<T>(x_obj, "input (NHWC codes)", 4);
  auto hs = checked<int32_t>(hs_obj, "bin starts (rows)", 1),
       he = checked<int32_t>(he_obj, "bin ends (rows)", 1);
  auto ws = checked<int32_t>(ws_obj, "bin starts (columns)", 1),
       we = checked<int32_t>(we_obj, "bin ends (columns)", 1);
  auto inv = checked<float>(inv_obj, "multipliers", 2);
  npq::Pool2dGeometry g{};
  g.batch = x.shape(0);
  g.h = x.shape(1);
  g.w = x.shape(2);
  g.c = x.shape(3);
  if (g.h == 0 || g.w == 0) throw ValueError("pooling needs a non-empty spatial input");
  g.oh = at_least(1, hs.shape(0), "output height");
  g.ow = at_least(1, ws.shape(0), "output width");
  check_bins(hs, he, g.oh, g.h, "row");
  check_bins(ws, we, g.ow, g.w, "column");
  if (static_cast<size_t>(inv.shape(0)) != g.oh || static_cast<size_t>(inv.shape(1)) != g.ow)
    throw ValueError("per-position arrays must have the output's (height, width)");
  // The largest bin sets the work estimate for threading and bounds the int32 sums.
  for (size_t i = 0; i < g.oh; ++i) g.kh = std::max<size_t>(g.kh, he.data()[i] - hs.data()[i]);
  for (size_t i = 0; i < g.ow; ++i) g.kw = std::max<size_t>(g.kw, we.data()[i] - ws.data()[i]);
  if (g.kh * g.kw > (size_t{1} << 23))
    throw ValueError("adaptive pooling bins larger than 2^23 elements");
  g.stride_h = g.stride_w = g.dil_h = g.dil_w = 1;
  const int32_t qmin = std::is_signed<T>::value ? -128 : 0,
                qmax = std::is_signed<T>::value ? 127 : 255;
  if (zp < qmin || zp > qmax) throw ValueError("zero_point out of the dtype's range");
  const npq::AdaptiveAvgPool2dArgs a{hs.data(),  he.data(), ws.data(), we.data(),
                                     inv.data(), zp,        qmin,      qmax};
  py::array_t<T> y({g.batch, g.oh, g.ow, g.c});
  const T* xd = x.data();
  T* yd = y.mutable_data();
  py::gil_scoped_release nogil;
  npq::adaptive_avg_pool2d_nhwc<T>(g, a, xd, yd);
  return y;
}

// The function for the input's dtype (uint8 or int8 codes).
template <class U, class S>
py::object by_dtype(const py::array& x, const U& u8, const S& s8) {
  if (py::isinstance<py::array_t<uint8_t>>(x)) return u8();
  if (py::isinstance<py::array_t<int8_t>>(x)) return s8();
  throw py::type_error("pooling input must be a uint8 or int8 array, got " +
                       std::string(py::str(x.dtype())));
}

}  // namespace

void register_pool(py::module_& m) {
  m.def(
      "max_pool2d_nhwc",
      [](const py::array& x, Pair out_hw, Pair k, Pair s, Pair p, Pair d) {
        return by_dtype(
            x, [&] { return py::object(max_pool<uint8_t>(x, out_hw, k, s, p, d)); },
            [&] { return py::object(max_pool<int8_t>(x, out_hw, k, s, p, d)); });
      },
      py::arg("x"), py::arg("out_hw"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), "Max pooling of NHWC uint8/int8 codes.");
  m.def(
      "avg_pool2d_nhwc",
      [](const py::array& x, Pair out_hw, Pair k, Pair s, Pair p, const py::handle& mult,
         const py::handle& inv, const py::handle& size, int32_t zp, long vc) {
        return by_dtype(
            x,
            [&] {
              return py::object(avg_pool<uint8_t>(x, out_hw, k, s, p, mult, inv, size, zp, vc));
            },
            [&] {
              return py::object(avg_pool<int8_t>(x, out_hw, k, s, p, mult, inv, size, zp, vc));
            });
      },
      py::arg("x"), py::arg("out_hw"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
      py::arg("mult"), py::arg("inv"), py::arg("size"), py::arg("zero_point"),
      py::arg("vector_channels"),
      "Average pooling of NHWC uint8/int8 codes with per-position constants.");
  m.def(
      "adaptive_avg_pool2d_nhwc",
      [](const py::array& x, const py::handle& hs, const py::handle& he, const py::handle& ws,
         const py::handle& we, const py::handle& inv, int32_t zp) {
        return by_dtype(
            x, [&] { return py::object(adaptive_avg_pool<uint8_t>(x, hs, he, ws, we, inv, zp)); },
            [&] { return py::object(adaptive_avg_pool<int8_t>(x, hs, he, ws, we, inv, zp)); });
      },
      py::arg("x"), py::arg("row_start"), py::arg("row_end"), py::arg("col_start"),
      py::arg("col_end"), py::arg("mult"), py::arg("zero_point"),
      "Adaptive average pooling of NHWC uint8/int8 codes over the given bins.");
}

}  // namespace npq_bind
