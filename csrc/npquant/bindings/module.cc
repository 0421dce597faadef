// pybind11 module npquant._C: validates arrays, releases the GIL, calls ops/.
// The friendly, PyTorch-shaped API lives in python/npquant; this layer is
// strict (exact dtypes, C-contiguous, shapes checked) and never crashes.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../cpu.h"
#include "../dispatch.h"
#include "../errors.h"
#include "../ops/linear.h"
#include "../ops/threadpool.h"
#include "../qmath.h"
#include "../reference/reference.h"
#include "common.h"

namespace py = pybind11;
using npq::ValueError;

namespace {

using npq_bind::check_finite;
using npq_bind::check_scale;
using npq_bind::check_scales;
using npq_bind::check_zp;
using npq_bind::checked;
using npq_bind::float_vector;

// Packs the weights with their checked scales and bias (npq::PackedLinear).
std::unique_ptr<npq::PackedLinear> make_packed(const py::handle& weight, const py::handle& w_scale,
                                               const py::handle& bias, const py::object& kernel) {
  auto w = checked<int8_t>(weight, "weight", 2);
  const size_t n = w.shape(0), k = w.shape(1);
  std::vector<float> ws = float_vector(w_scale, "weight scales", n, false);
  std::vector<float> b = float_vector(bias, "bias", n, true);
  check_scales(ws, "weight scale");
  check_finite(b, "bias");
  const npq::QGemmKernel* kern =
      kernel.is_none() ? nullptr : &npq::gemm_kernel_by_name(kernel.cast<std::string>());
  const int8_t* data = w.data();
  py::gil_scoped_release nogil;
  return std::make_unique<npq::PackedLinear>(data, n, k, std::move(ws), std::move(b), kern);
}

// The activation of a Linear call: a 2-D C-contiguous array of the layer's K.
template <class T>
py::array_t<T> linear_input(const py::handle& x_obj, const npq::PackedLinear& p) {
  auto x = checked<T>(x_obj, "input", 2);
  if (static_cast<size_t>(x.shape(1)) != p.k())
    throw ValueError("input has " + std::to_string(x.shape(1)) +
                     " features but the layer expects " + std::to_string(p.k()));
  return x;
}

py::array_t<uint8_t> linear_static(const py::handle& x_obj, const npq::PackedLinear& p, float xs,
                                   int32_t xz, float ys, int32_t yz, bool relu) {
  auto x = linear_input<uint8_t>(x_obj, p);
  const size_t m = x.shape(0), n = p.n();
  check_scale(xs, "input scale");
  check_scale(ys, "output scale");
  check_zp(xz, "input zero_point");
  check_zp(yz, "output zero_point");
  py::array_t<uint8_t> y({m, n});
  const uint8_t* xd = x.data();
  uint8_t* yd = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    p.run_static(m, xd, xs, xz, ys, yz, relu, yd);
  }
  return y;
}

py::array_t<float> linear_dynamic(const py::handle& x_obj, const npq::PackedLinear& p, bool per_row,
                                  bool reduce_range) {
  auto x = linear_input<float>(x_obj, p);
  const size_t m = x.shape(0), n = p.n();
  py::array_t<float> y({m, n});
  const float* xd = x.data();
  float* yd = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    p.run_dynamic(m, xd, per_row, reduce_range, yd);
  }
  return y;
}

py::array_t<uint8_t> quantize_u8(const py::handle& x_obj, float scale, int32_t zp) {
  auto x = checked<float>(x_obj, "input", -1);
  check_scale(scale, "scale");
  check_zp(zp, "zero_point");
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  py::array_t<uint8_t> q(shape);
  const size_t n = x.size();
  if (n == 0) return q;
  const float* src = x.data();
  uint8_t* dst = q.mutable_data();
  bool finite;
  {
    py::gil_scoped_release nogil;
    finite = npq::quantize_u8(n, src, scale, zp, dst);
  }
  if (!finite)
    throw ValueError(
        "input contains NaN or Inf; quantization maps only finite values "
        "(replace them first, e.g. numpy.nan_to_num)");
  return q;
}

// fl(scale * float(q - zp)) in float32, as QTensor.dequantize computes it in NumPy (one
// rounding: the product). An NHWC-stored 4-D array comes out in logical NCHW order.
// It replaces NumPy's three passes on the last op of nearly every model, and keeps a
// model's forward inside native calls from QuantStub to DeQuantStub (npquant.freeze).
py::array_t<float> dequantize_u8(const py::handle& q_obj, float scale, int32_t zp, bool nhwc) {
  auto q = checked<uint8_t>(q_obj, "codes", -1);
  check_scale(scale, "scale");
  check_zp(zp, "zero_point");
  if (nhwc && q.ndim() != 4) throw ValueError("nhwc codes must be 4-D (N, H, W, C)");
  std::vector<py::ssize_t> shape(q.shape(), q.shape() + q.ndim());
  if (nhwc) shape = {shape[0], shape[3], shape[1], shape[2]};
  py::array_t<float> y(shape);
  const uint8_t* src = q.data();
  float* dst = y.mutable_data();
  const size_t n = q.size();
  const auto value = [&](uint8_t v) { return scale * static_cast<float>(int32_t{v} - zp); };
  {
    py::gil_scoped_release nogil;
    if (!nhwc) {
      for (size_t i = 0; i < n; ++i) dst[i] = value(src[i]);
    } else if (n != 0) {
      const size_t b = shape[0], c = shape[1], hw = n / (b * c);
      for (size_t img = 0; img < b; ++img)
        for (size_t p = 0; p < hw; ++p)
          for (size_t ch = 0; ch < c; ++ch)
            dst[(img * c + ch) * hw + p] = value(src[(img * hw + p) * c + ch]);
    }
  }
  return y;
}

py::tuple minmax(const py::handle& x_obj) {
  auto x = checked<float>(x_obj, "input", -1);
  if (x.size() == 0) throw ValueError("min/max of an empty array is undefined");
  float mn, mx;
  bool finite;
  {
    py::gil_scoped_release nogil;
    finite = npq::minmax_f32(x.size(), x.data(), &mn, &mx);
  }
  if (!finite) throw ValueError("input contains NaN or Inf");
  return py::make_tuple(mn, mx);
}

py::tuple choose_qparams(float mn, float mx, int32_t qmin, int32_t qmax) {
  if (!std::isfinite(mn) || !std::isfinite(mx)) throw ValueError("min and max must be finite");
  if (mn > mx) throw ValueError("min must be <= max");
  if (qmin >= qmax) throw ValueError("qmin must be < qmax");
  npq::QuantParams q = npq::choose_qparams(mn, mx, qmin, qmax);
  return py::make_tuple(q.scale, q.zero_point);
}

py::dict kernel_dict(const npq::QGemmKernel& k) {
  py::dict d;
  d["name"] = k.name;
  d["isa"] = npq::isa_name(k.isa);
  d["standin"] = k.standin;
  d["mr"] = k.mr;
  d["nr"] = k.layout.nr;
  d["kr"] = k.layout.kr;
  d["k_align"] = k.layout.k_align;
  d["w127"] = k.layout.w127 != 0;  // weights in [-127, 127], else a per-layer fallback
  return d;
}

py::dict cpu_info() {
  const auto& f = npq::cpu_features();
  const auto& ks = npq::kernels();
  py::dict d;
  d["arch"] = f.arch;
  d["vendor"] = f.vendor;
  d["brand"] = f.brand;
  d["features"] = f.flags();
  std::vector<std::string> built, runnable;
  for (auto i : npq::built_isas()) built.push_back(npq::isa_name(i));
  for (const auto& k : npq::runnable_gemm_kernels()) {
    std::string s = npq::isa_name(k.isa);
    if (std::find(runnable.begin(), runnable.end(), s) == runnable.end()) runnable.push_back(s);
  }
  d["built_isas"] = built;
  d["runnable_isas"] = runnable;
  d["isa"] = npq::isa_name(ks.cap);
  py::dict fam;
  fam["gemm"] = kernel_dict(ks.gemm);
  fam["gemm_small_m"] = kernel_dict(ks.gemm_small);
  py::dict q;
  q["name"] = ks.quant.name;
  q["isa"] = npq::isa_name(ks.quant.isa);
  fam["quantize"] = q;
  const auto name_isa = [](const char* name, npq::Isa isa) {
    py::dict k;
    k["name"] = name ? py::object(py::str(name)) : py::object(py::none());
    k["isa"] = name ? py::object(py::str(npq::isa_name(isa))) : py::object(py::none());
    return k;
  };
  fam["conv_igemm"] = name_isa(ks.conv.igemm.name, ks.conv.igemm.isa);  // name None: rows gathered
  // the stem path's kernel (few input channels); name None: those convs gather
  fam["conv_stem"] = name_isa(ks.conv.stem.name, ks.conv.stem.isa);
  fam["dwconv"] = name_isa(ks.conv.dwconv.name, ks.conv.dwconv.isa);
  // name None: 3x3 stride-1 convs run the igemm/gather path
  fam["conv_winograd"] = name_isa(ks.conv.wino.name, ks.conv.wino.isa);
  fam["add"] = name_isa(ks.add.name, ks.add.isa);  // name None: lookup tables
  fam["gelu"] = name_isa(ks.gelu.name, ks.gelu.isa);
  fam["lut"] = name_isa(ks.lut.name, ks.lut.isa);
  fam["maxpool"] = name_isa(ks.maxpool.name, ks.maxpool.isa);
  fam["softmax"] = name_isa(ks.softmax.name, ks.softmax.isa);
  fam["layernorm"] = name_isa(ks.layernorm.name, ks.layernorm.isa);
  fam["lstm"] = name_isa(ks.lstm.name, ks.lstm.isa);
  fam["gru"] = name_isa(ks.gru.name, ks.gru.isa);
  fam["fgemm"] = name_isa(ks.fgemm.name, ks.fgemm.isa);
  fam["mul"] = name_isa(ks.mul.name, ks.mul.isa);  // name None: lookup tables
  d["kernels"] = fam;
  d["small_m"] = ks.small_m;
  d["self_check"] = ks.self_check;
  d["num_threads"] = npq::get_num_threads();
  return d;
}

std::vector<py::dict> runnable_gemm_kernels() {
  std::vector<py::dict> v;
  for (const auto& k : npq::runnable_gemm_kernels()) v.push_back(kernel_dict(k));
  return v;
}

// ---- reference (the oracle), for tests
py::array_t<uint8_t> ref_linear_static(const py::handle& x_obj, int32_t xz, const py::handle& w_obj,
                                       float xs, const py::handle& w_scale, const py::handle& bias,
                                       float ys, int32_t yz, bool relu) {
  auto x = checked<uint8_t>(x_obj, "input", 2);
  auto w = checked<int8_t>(w_obj, "weight", 2);
  const size_t m = x.shape(0), k = x.shape(1), n = w.shape(0);
  if (static_cast<size_t>(w.shape(1)) != k) throw ValueError("K mismatch");
  std::vector<float> ws = float_vector(w_scale, "weight scales", n, false);
  std::vector<float> b = float_vector(bias, "bias", n, true);
  std::vector<float> bias_s(n), mult(n);
  if (!npq::requant_constants(n, xs, ws.data(), ys, b.empty() ? nullptr : b.data(), bias_s.data(),
                              mult.data()))
    throw ValueError("requantization constants are not finite");
  py::array_t<uint8_t> y({m, n});
  npq::ref::qgemm_requant(m, n, k, x.data(), k, xz, w.data(), k, bias_s.data(), mult.data(), yz,
                          relu ? yz : 0, 255, y.mutable_data(), n);
  return y;
}

py::array_t<float> ref_linear_dequant(const py::handle& x_obj, const py::handle& zp_obj,
                                      const py::handle& scale_obj, const py::handle& w_obj,
                                      const py::handle& w_scale, const py::handle& bias) {
  auto x = checked<uint8_t>(x_obj, "input", 2);
  auto zp = checked<int32_t>(zp_obj, "row zero points", 1);
  auto sc = checked<float>(scale_obj, "row scales", 1);
  auto w = checked<int8_t>(w_obj, "weight", 2);
  const size_t m = x.shape(0), k = x.shape(1), n = w.shape(0);
  if (static_cast<size_t>(w.shape(1)) != k) throw ValueError("K mismatch");
  if (static_cast<size_t>(zp.shape(0)) != m || static_cast<size_t>(sc.shape(0)) != m)
    throw ValueError("one zero point and scale per row");
  std::vector<float> ws = float_vector(w_scale, "weight scales", n, false);
  std::vector<float> b = float_vector(bias, "bias", n, true);
  py::array_t<float> y({m, n});
  npq::ref::qgemm_dequant(m, n, k, x.data(), k, zp.data(), sc.data(), w.data(), k, ws.data(),
                          b.empty() ? nullptr : b.data(), y.mutable_data(), n);
  return y;
}

py::array_t<int32_t> ref_quantize(const py::handle& x_obj, float scale, int32_t zp, int32_t qmin,
                                  int32_t qmax) {
  auto x = checked<float>(x_obj, "input", -1);
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  py::array_t<int32_t> q(shape);
  npq::ref::quantize(x.size(), x.data(), scale, zp, qmin, qmax, q.mutable_data());
  return q;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "npquant native core (int8 kernels). Use the npquant package, not this module.";
  py::register_exception<ValueError>(m, "NativeValueError", PyExc_ValueError);
  py::register_exception<npq::IndexError>(m, "NativeIndexError", PyExc_IndexError);
  // Surface a bad NPQUANT_ISA at import, with the fix in the message.
  try {
    npq::kernels();
  } catch (const std::runtime_error& e) {
    throw py::import_error(e.what());
  }

  m.attr("MAX_K") = npq::kMaxK;
  m.def("cpu_info", &cpu_info, "CPU features, built ISAs and chosen kernels.");
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw ValueError("number of threads must be >= 1, got " + std::to_string(n));
    py::gil_scoped_release nogil;
    npq::set_num_threads(n);
  });
  m.def("get_num_threads", &npq::get_num_threads);
  m.def("runnable_gemm_kernels", &runnable_gemm_kernels);

  using npq::PackedLinear;
  py::class_<PackedLinear>(m, "PackedLinearWeight")
      .def(py::init(&make_packed), py::arg("weight"), py::arg("w_scale"),
           py::arg("bias") = py::none(), py::arg("kernel") = py::none(),
           "Packs an int8 (out_features, in_features) weight with its per-channel float32 "
           "scales and optional float32 bias for the selected kernel.")
      .def_property_readonly("out_features", &PackedLinear::n)
      .def_property_readonly("in_features", &PackedLinear::k)
      .def_property_readonly("kernel", [](const PackedLinear& p) { return p.kernel().name; })
      .def_property_readonly("nbytes", &PackedLinear::bytes);

  m.def("linear_static", &linear_static, py::arg("x"), py::arg("packed"), py::arg("x_scale"),
        py::arg("x_zero_point"), py::arg("y_scale"), py::arg("y_zero_point"),
        py::arg("relu") = false);
  m.def("linear_dynamic", &linear_dynamic, py::arg("x"), py::arg("packed"),
        py::arg("per_row") = false, py::arg("reduce_range") = false);
  m.def("quantize_u8", &quantize_u8, py::arg("x"), py::arg("scale"), py::arg("zero_point"));
  m.def("dequantize_u8", &dequantize_u8, py::arg("codes"), py::arg("scale"), py::arg("zero_point"),
        py::arg("nhwc") = false);
  m.def("minmax", &minmax, py::arg("x"));
  m.def("choose_qparams", &choose_qparams, py::arg("min"), py::arg("max"), py::arg("qmin") = 0,
        py::arg("qmax") = 255);

  py::module_ ref = m.def_submodule("reference", "The oracle (naive loops), for tests.");
  ref.def("linear_static", &ref_linear_static, py::arg("x"), py::arg("x_zero_point"),
          py::arg("weight"), py::arg("x_scale"), py::arg("w_scale"), py::arg("bias"),
          py::arg("y_scale"), py::arg("y_zero_point"), py::arg("relu") = false);
  ref.def("linear_dequant", &ref_linear_dequant, py::arg("x"), py::arg("row_zero_points"),
          py::arg("row_scales"), py::arg("weight"), py::arg("w_scale"), py::arg("bias"));
  ref.def("quantize", &ref_quantize, py::arg("x"), py::arg("scale"), py::arg("zero_point"),
          py::arg("qmin") = 0, py::arg("qmax") = 255);

  npq_bind::register_conv(m, ref);
  npq_bind::register_pool(m);
  npq_bind::register_elementwise(m);
  npq_bind::register_embedding(m);
  npq_bind::register_sequence(m);
  npq_bind::register_rnn(m);
}
