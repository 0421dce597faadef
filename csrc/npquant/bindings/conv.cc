// Conv2d bindings: packed weights, the static conv (NHWC u8 -> NHWC u8) and the
// reference conv for tests. Strict: exact dtypes, C-contiguous, shapes checked.
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include "../cpu.h"
#include "../dispatch.h"
#include "../ops/conv2d.h"
#include "../qmath.h"
#include "../reference/reference.h"
#include "common.h"

namespace npq_bind {

namespace {

using Pair = std::tuple<long, long>;
using Quad = std::tuple<long, long, long, long>;

// Geometry from OIHW weights (out_c, in_c/groups, kh, kw) and the conv arguments.
npq::ConvGeometry geometry(const py::array_t<int8_t>& w, Pair stride, Quad padding, Pair dilation,
                           long groups) {
  npq::ConvGeometry g{};
  g.groups = at_least(1, groups, "groups");
  g.out_c = at_least(1, w.shape(0), "weight.shape[0] (out_channels)");
  g.in_c = at_least(1, w.shape(1), "weight.shape[1] (in_channels / groups)") * g.groups;
  g.kh = at_least(1, w.shape(2), "kernel height");
  g.kw = at_least(1, w.shape(3), "kernel width");
  g.stride_h = at_least(1, std::get<0>(stride), "stride");
  g.stride_w = at_least(1, std::get<1>(stride), "stride");
  g.dil_h = at_least(1, std::get<0>(dilation), "dilation");
  g.dil_w = at_least(1, std::get<1>(dilation), "dilation");
  g.pad_top = at_least(0, std::get<0>(padding), "padding");
  g.pad_left = at_least(0, std::get<1>(padding), "padding");
  g.pad_bottom = at_least(0, std::get<2>(padding), "padding");
  g.pad_right = at_least(0, std::get<3>(padding), "padding");
  npq::check_conv_geometry(g);
  return g;
}

py::array_t<int8_t> conv_weight(const py::handle& obj) {
  return checked<int8_t>(obj, "weight (out_channels, in_channels/groups, kh, kw)", 4);
}

struct PackedConv {
  std::shared_ptr<const npq::PackedConv2d> w;
};

PackedConv make_packed(const py::handle& weight, Pair stride, Quad padding, Pair dilation,
                       long groups, const py::object& isa, bool igemm,
                       std::optional<bool> winograd) {
  auto w = conv_weight(weight);
  const npq::ConvGeometry g = geometry(w, stride, padding, dilation, groups);
  npq::ConvKernels k;
  if (isa.is_none()) {
    k = npq::kernels().conv;
  } else {
    npq::Isa i;
    const std::string name = isa.cast<std::string>();
    if (!npq::parse_isa(name, &i)) throw ValueError("unknown ISA '" + name + "'");
    try {
      k = npq::conv_kernels_for(i);
    } catch (const std::runtime_error& e) {
      throw ValueError(e.what());
    }
  }
  const npq::WinogradUse wino = !winograd   ? npq::WinogradUse::when_faster
                                : *winograd ? npq::WinogradUse::when_exact
                                            : npq::WinogradUse::never;
  const int8_t* data = w.data();
  py::gil_scoped_release nogil;
  return PackedConv{std::make_shared<npq::PackedConv2d>(data, g, k, igemm, wino)};
}

// Checks the NHWC input against the layer; returns (batch, h, w).
std::tuple<size_t, size_t, size_t> input_shape(const py::array_t<uint8_t>& x,
                                               const npq::ConvGeometry& g) {
  if (static_cast<size_t>(x.shape(3)) != g.in_c)
    throw ValueError("input has " + std::to_string(x.shape(3)) +
                     " channels in its last dimension but the layer expects " +
                     std::to_string(g.in_c) +
                     "; the native conv takes NHWC uint8 arrays "
                     "(batch, height, width, channels)");
  if (x.shape(1) == 0 || x.shape(2) == 0) throw ValueError("input height and width must be >= 1");
  return {static_cast<size_t>(x.shape(0)), static_cast<size_t>(x.shape(1)),
          static_cast<size_t>(x.shape(2))};
}

std::tuple<size_t, size_t, size_t> input_shape_nchw(const py::array_t<uint8_t>& x,
                                                    const npq::ConvGeometry& g) {
  if (static_cast<size_t>(x.shape(1)) != g.in_c)
    throw ValueError("input has " + std::to_string(x.shape(1)) +
                     " channels in its second dimension but the layer expects " +
                     std::to_string(g.in_c) + " (nchw=True: (batch, channels, height, width))");
  if (x.shape(2) == 0 || x.shape(3) == 0) throw ValueError("input height and width must be >= 1");
  return {static_cast<size_t>(x.shape(0)), static_cast<size_t>(x.shape(2)),
          static_cast<size_t>(x.shape(3))};
}

// Scales, zero points and bias, checked; returns (w_scale, bias).
std::pair<std::vector<float>, std::vector<float>> check_qparams(const npq::ConvGeometry& g,
                                                                float xs, int32_t xz,
                                                                const py::handle& w_scale,
                                                                const py::handle& bias, float ys,
                                                                int32_t yz) {
  check_scale(xs, "input scale");
  check_scale(ys, "output scale");
  check_zp(xz, "input zero_point");
  check_zp(yz, "output zero_point");
  std::vector<float> ws = float_vector(w_scale, "weight scales", g.out_c, false);
  std::vector<float> b = float_vector(bias, "bias", g.out_c, true);
  check_scales(ws, "weight scale");
  check_finite(b, "bias");
  return {ws, b};
}

// Output height and width; a kernel larger than the padded input is a ValueError.
std::pair<size_t, size_t> output_hw(size_t h, size_t w, const npq::ConvGeometry& g) {
  return {npq::conv_out_size(h, g.kh, g.stride_h, g.dil_h, g.pad_top, g.pad_bottom, "height"),
          npq::conv_out_size(w, g.kw, g.stride_w, g.dil_w, g.pad_left, g.pad_right, "width")};
}

py::array_t<uint8_t> conv2d_static(const py::handle& x_obj, const PackedConv& p, float xs,
                                   int32_t xz, const py::handle& w_scale, const py::handle& bias,
                                   float ys, int32_t yz, bool relu, bool nchw) {
  auto x = checked<uint8_t>(x_obj, nchw ? "input (NCHW uint8)" : "input (NHWC uint8)", 4);
  const npq::ConvGeometry& g = p.w->geometry();
  auto [n, h, w] = nchw ? input_shape_nchw(x, g) : input_shape(x, g);
  auto [ws, b] = check_qparams(g, xs, xz, w_scale, bias, ys, yz);
  const auto [oh, ow] = output_hw(h, w, g);
  py::array_t<uint8_t> y({n, oh, ow, g.out_c});
  const npq::Conv2dArgs a{n,
                          h,
                          w,
                          x.data(),
                          xs,
                          xz,
                          ws.data(),
                          b.empty() ? nullptr : b.data(),
                          ys,
                          yz,
                          relu ? yz : 0,
                          255,
                          y.mutable_data(),
                          nchw};
  {
    py::gil_scoped_release nogil;
    npq::conv2d_static(*p.w, a);
  }
  return y;
}

py::array_t<uint8_t> ref_conv2d_static(const py::handle& x_obj, int32_t xz, const py::handle& w_obj,
                                       Pair stride, Quad padding, Pair dilation, long groups,
                                       float xs, const py::handle& w_scale, const py::handle& bias,
                                       float ys, int32_t yz, bool relu) {
  auto x = checked<uint8_t>(x_obj, "input (NHWC uint8)", 4);
  auto wt = conv_weight(w_obj);
  const npq::ConvGeometry g = geometry(wt, stride, padding, dilation, groups);
  auto [n, h, w] = input_shape(x, g);
  auto [ws, b] = check_qparams(g, xs, xz, w_scale, bias, ys, yz);
  const auto [oh, ow] = output_hw(h, w, g);
  std::vector<float> bias_s(g.out_c), mult(g.out_c);
  if (!npq::requant_constants(g.out_c, xs, ws.data(), ys, b.empty() ? nullptr : b.data(),
                              bias_s.data(), mult.data()))
    throw ValueError("requantization constants are not finite");
  py::array_t<uint8_t> y({n, oh, ow, g.out_c});
  const uint8_t* xd = x.data();
  const int8_t* wd = wt.data();
  uint8_t* yd = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    npq::ref::conv2d_requant(g, n, h, w, xd, xz, wd, bias_s.data(), mult.data(), yz, relu ? yz : 0,
                             255, yd);
  }
  return y;
}

py::dict conv_kernels_dict(const npq::ConvKernels& k) {
  py::dict d;
  d["gemm"] = k.gemm.name;
  d["igemm"] = k.igemm.name ? py::object(py::str(k.igemm.name)) : py::object(py::none());
  d["stem"] = k.stem.name ? py::object(py::str(k.stem.name)) : py::object(py::none());
  d["dwconv"] = k.dwconv.name;
  d["dwconv_strided"] = k.dwconv_strided.name;
  d["winograd"] = k.wino.name ? py::object(py::str(k.wino.name)) : py::object(py::none());
  return d;
}

}  // namespace

void register_conv(py::module_& m, py::module_& ref) {
  py::class_<PackedConv>(m, "PackedConv2dWeight")
      .def(py::init(&make_packed), py::arg("weight"), py::arg("stride") = Pair{1, 1},
           py::arg("padding") = Quad{0, 0, 0, 0}, py::arg("dilation") = Pair{1, 1},
           py::arg("groups") = 1, py::arg("isa") = py::none(), py::arg("igemm") = true,
           py::arg("winograd") = py::none(),
           "Packs int8 OIHW conv weights (out_channels, in_channels/groups, kh, kw). "
           "padding is (top, left, bottom, right). isa: kernels dispatch would pick under "
           "NPQUANT_ISA=isa (default: this process's). igemm=False forces the gathered "
           "GEMM where the indirect GEMM would run (for tests). winograd: None runs the "
           "exact Winograd F(2x2, 3x3) path on the 3x3 stride-1 layers it is faster on "
           "(where the ISA has one), True on every layer it computes exactly, False never "
           "(for tests).")
      .def_property_readonly("in_channels",
                             [](const PackedConv& p) { return p.w->geometry().in_c; })
      .def_property_readonly("out_channels",
                             [](const PackedConv& p) { return p.w->geometry().out_c; })
      .def_property_readonly("groups", [](const PackedConv& p) { return p.w->geometry().groups; })
      .def_property_readonly("path", [](const PackedConv& p) { return p.w->path_name(); })
      .def_property_readonly("kernel", [](const PackedConv& p) { return p.w->kernel_name(); })
      .def_property_readonly("nbytes", [](const PackedConv& p) { return p.w->bytes(); });

  m.def("conv2d_static", &conv2d_static, py::arg("x"), py::arg("packed"), py::arg("x_scale"),
        py::arg("x_zero_point"), py::arg("w_scale"), py::arg("bias"), py::arg("y_scale"),
        py::arg("y_zero_point"), py::arg("relu") = false, py::arg("nchw") = false,
        "Quantized conv: NHWC uint8 in (NCHW with nchw=True), NHWC uint8 out, "
        "per-channel requantization.");
  m.def(
      "conv_kernels", []() { return conv_kernels_dict(npq::kernels().conv); },
      "The conv kernels this process uses (gemm, igemm or None, stem or None, dwconv, "
      "winograd or None).");

  ref.def("conv2d_static", &ref_conv2d_static, py::arg("x"), py::arg("x_zero_point"),
          py::arg("weight"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
          py::arg("groups"), py::arg("x_scale"), py::arg("w_scale"), py::arg("bias"),
          py::arg("y_scale"), py::arg("y_zero_point"), py::arg("relu") = false);
}

}  // namespace npq_bind
