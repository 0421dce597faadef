// Elementwise bindings: table lookups on 8-bit codes (ops/elementwise.h). The
// Python layer builds the tables (nn/quantized/functional_modules.py) and
// passes int8 data as its uint8 bit pattern; this layer checks shapes and
// table sizes and releases the GIL.
#include <pybind11/stl.h>

#include <string>
#include <tuple>
#include <vector>

#include "../dispatch.h"
#include "../ops/elementwise.h"
#include "common.h"

namespace npq_bind {

namespace {

using U8 = py::array_t<uint8_t>;

U8 table_of(const py::handle& obj, py::ssize_t entries) {
  auto t = checked<uint8_t>(obj, "table", 1);
  if (t.shape(0) != entries)
    throw ValueError("table must have " + std::to_string(entries) + " entries, got " +
                     std::to_string(t.shape(0)));
  return t;
}

U8 lookup(const py::handle& x_obj, const py::handle& table_obj) {
  auto x = checked<uint8_t>(x_obj, "codes", -1);
  auto t = table_of(table_obj, 256);
  U8 y(shape_of(x));
  const uint8_t *xd = x.data(), *td = t.data();
  uint8_t* yd = y.mutable_data();
  const size_t n = static_cast<size_t>(x.size());
  py::gil_scoped_release nogil;
  npq::lookup_u8(xd, yd, n, td);
  return y;
}

U8 clamp(const py::handle& x_obj, int lo, int hi) {
  auto x = checked<uint8_t>(x_obj, "codes", -1);
  if (lo < 0 || hi > 255 || lo > hi)
    throw ValueError("clamp bounds must satisfy 0 <= lo <= hi <= 255, got lo=" +
                     std::to_string(lo) + ", hi=" + std::to_string(hi));
  U8 y(shape_of(x));
  const uint8_t* xd = x.data();
  uint8_t* yd = y.mutable_data();
  const size_t n = static_cast<size_t>(x.size());
  py::gil_scoped_release nogil;
  npq::clamp_u8(xd, yd, n, static_cast<uint8_t>(lo), static_cast<uint8_t>(hi));
  return y;
}

U8 lookup2(const py::handle& a_obj, const py::handle& b_obj, const py::handle& table_obj) {
  auto a = checked<uint8_t>(a_obj, "first operand codes", -1);
  auto b = checked<uint8_t>(b_obj, "second operand codes", -1);
  if (shape_of(a) != shape_of(b)) throw ValueError("operands must have the same shape");
  auto t = table_of(table_obj, 65536);
  U8 y(shape_of(a));
  const uint8_t *ad = a.data(), *bd = b.data(), *td = t.data();
  uint8_t* yd = y.mutable_data();
  const size_t n = static_cast<size_t>(a.size());
  py::gil_scoped_release nogil;
  npq::lookup2_u8(ad, bd, yd, n, td);
  return y;
}

U8 lookup2_channel(const py::handle& a_obj, const py::handle& b_obj, const py::handle& table_obj,
                   bool channels_last) {
  auto a = checked<uint8_t>(a_obj, "full operand codes", 4);
  auto b = checked<uint8_t>(b_obj, "per-channel operand codes", 2);
  auto t = table_of(table_obj, 65536);
  const size_t batch = a.shape(0);
  const size_t channels = channels_last ? a.shape(3) : a.shape(1);
  const size_t spatial = channels_last ? a.shape(1) * a.shape(2) : a.shape(2) * a.shape(3);
  if (static_cast<size_t>(b.shape(0)) != batch || static_cast<size_t>(b.shape(1)) != channels)
    throw ValueError("per-channel operand must be (batch, channels) of the full operand");
  U8 y(shape_of(a));
  const uint8_t *ad = a.data(), *bd = b.data(), *td = t.data();
  uint8_t* yd = y.mutable_data();
  py::gil_scoped_release nogil;
  npq::lookup2_channel_u8(ad, bd, yd, batch, spatial, channels, channels_last, td);
  return y;
}

// requant: None, or per part None or its (scale, zero_point) to requantize from
// to (scale, zero_point) with the add kernel (uint8 codes only).
U8 cat_channels(const std::vector<py::object>& xs, const std::vector<py::object>& tables,
                const py::object& requant, float scale, int32_t zp) {
  if (xs.empty()) throw ValueError("cat needs at least one array");
  if (tables.size() != xs.size()) throw ValueError("cat needs one table (or None) per array");
  std::vector<npq::QAddParams> params(xs.size());
  std::vector<bool> use_params(xs.size(), false);
  if (!requant.is_none()) {
    const auto qps = requant.cast<std::vector<py::object>>();
    if (qps.size() != xs.size())
      throw ValueError("cat needs one (scale, zero_point) (or None) per array");
    for (size_t i = 0; i < qps.size(); ++i) {
      if (qps[i].is_none()) continue;
      if (npq::kernels().add.vadd == nullptr)
        throw ValueError("no native add kernel on this CPU/build (use the lookup tables)");
      const auto qp = qps[i].cast<std::tuple<float, int32_t>>();
      const float s = std::get<0>(qp);
      const int32_t z = std::get<1>(qp);
      check_scale(s, "operand scale");
      check_scale(scale, "output scale");
      check_zp(z, "operand zero_point");
      check_zp(zp, "output zero_point");
      params[i] = npq::requant_params(s, z, scale, zp);
      use_params[i] = true;
    }
  }
  std::vector<U8> arrays, keep;
  std::vector<npq::CatPart> parts;
  std::vector<py::ssize_t> shape;
  for (size_t i = 0; i < xs.size(); ++i) {
    arrays.push_back(checked<uint8_t>(xs[i], "cat operand (NHWC codes)", 4));
    const U8& x = arrays.back();
    if (i == 0) {
      shape = shape_of(x);
      shape[3] = 0;
    } else if (x.shape(0) != shape[0] || x.shape(1) != shape[1] || x.shape(2) != shape[2]) {
      throw ValueError("cat operands must agree in every dimension but channels");
    }
    shape[3] += x.shape(3);
    const uint8_t* table = nullptr;
    if (!tables[i].is_none()) {
      keep.push_back(table_of(tables[i], 256));
      table = keep.back().data();
    }
    parts.push_back({x.data(), static_cast<size_t>(x.shape(3)), table,
                     use_params[i] && table == nullptr ? &params[i] : nullptr});
  }
  U8 y(shape);
  uint8_t* yd = y.mutable_data();
  const size_t rows = static_cast<size_t>(shape[0] * shape[1] * shape[2]);
  py::gil_scoped_release nogil;
  npq::cat_rows_u8(parts.data(), parts.size(), rows, yd);
  return y;
}

U8 channel_shuffle(const py::handle& x_obj, int64_t groups) {
  auto x = checked<uint8_t>(x_obj, "codes (NHWC)", 4);
  const int64_t c = x.shape(3);
  if (groups <= 0 || c % groups != 0)
    throw ValueError("channel_shuffle: " + std::to_string(c) + " channels do not split into " +
                     std::to_string(groups) + " groups");
  U8 y(shape_of(x));
  const uint8_t* xd = x.data();
  uint8_t* yd = y.mutable_data();
  const size_t rows = static_cast<size_t>(x.shape(0) * x.shape(1) * x.shape(2));
  py::gil_scoped_release nogil;
  npq::channel_shuffle_u8(xd, yd, rows, static_cast<size_t>(groups),
                          static_cast<size_t>(c / groups));
  return y;
}

// NCHW <-> NHWC copies of 4-D 8-bit codes: (n, d1, d2, d3) -> (n, d2, d3, d1) when
// to_nhwc, else (n, d3, d1, d2).
U8 relayout(const py::handle& x_obj, bool to_nhwc) {
  auto x = checked<uint8_t>(x_obj, to_nhwc ? "codes (NCHW)" : "codes (NHWC)", 4);
  const py::ssize_t n = x.shape(0), d1 = x.shape(1), d2 = x.shape(2), d3 = x.shape(3);
  U8 y(to_nhwc ? std::vector<py::ssize_t>{n, d2, d3, d1} : std::vector<py::ssize_t>{n, d3, d1, d2});
  const uint8_t* xd = x.data();
  uint8_t* yd = y.mutable_data();
  const auto z = [](py::ssize_t v) { return static_cast<size_t>(v); };
  py::gil_scoped_release nogil;
  if (to_nhwc)
    npq::nchw_to_nhwc_u8(xd, yd, z(n), z(d1), z(d2 * d3));
  else
    npq::nhwc_to_nchw_u8(xd, yd, z(n), z(d1 * d2), z(d3));
  return y;
}

U8 channel_range(const py::handle& x_obj, long start, long count) {
  auto x = checked<uint8_t>(x_obj, "codes", -1);
  if (x.ndim() < 1) throw ValueError("codes must have at least one dimension (the channels)");
  const py::ssize_t c = x.shape(x.ndim() - 1);
  if (start < 0 || count < 0 || start + count > c)
    throw ValueError("channels [" + std::to_string(start) + ", " + std::to_string(start + count) +
                     ") are outside 0.." + std::to_string(c));
  std::vector<py::ssize_t> shape = shape_of(x);
  shape.back() = count;
  U8 y(shape);
  const uint8_t* xd = x.data();
  uint8_t* yd = y.mutable_data();
  const size_t rows = c ? static_cast<size_t>(x.size() / c) : 0;
  py::gil_scoped_release nogil;
  npq::channel_range_u8(xd, yd, rows, static_cast<size_t>(c), static_cast<size_t>(start),
                        static_cast<size_t>(count));
  return y;
}

// The qparams of a binary op's two operands and its output, checked in this order.
void check_binary_qparams(float a_scale, int32_t a_zp, float b_scale, int32_t b_zp, float scale,
                          int32_t zp) {
  check_scale(a_scale, "first operand scale");
  check_scale(b_scale, "second operand scale");
  check_scale(scale, "output scale");
  check_zp(a_zp, "first operand zero_point");
  check_zp(b_zp, "second operand zero_point");
  check_zp(zp, "output zero_point");
}

// add / add_relu of same-shape quint8 codes with the dispatched kernel.
U8 qadd(const py::handle& a_obj, const py::handle& b_obj, float a_scale, int32_t a_zp,
        float b_scale, int32_t b_zp, float scale, int32_t zp, bool relu) {
  if (npq::kernels().add.vadd == nullptr)
    throw ValueError("no native add kernel on this CPU/build (use the lookup tables)");
  auto a = checked<uint8_t>(a_obj, "first operand codes", -1);
  auto b = checked<uint8_t>(b_obj, "second operand codes", -1);
  if (shape_of(a) != shape_of(b)) throw ValueError("operands must have the same shape");
  check_binary_qparams(a_scale, a_zp, b_scale, b_zp, scale, zp);
  const npq::QAddParams p = npq::qadd_params(a_scale, a_zp, b_scale, b_zp, scale, zp, relu);
  U8 y(shape_of(a));
  const uint8_t *ad = a.data(), *bd = b.data();
  uint8_t* yd = y.mutable_data();
  const size_t n = static_cast<size_t>(a.size());
  py::gil_scoped_release nogil;
  npq::qadd_u8(n, ad, bd, yd, p);
  return y;
}

// mul of quint8 codes with the dispatched kernel: same shape, or (channel_last)
// a 4-D NHWC a with b (batch, channels).
U8 qmul(const py::handle& a_obj, const py::handle& b_obj, float a_scale, int32_t a_zp,
        float b_scale, int32_t b_zp, float scale, int32_t zp, bool channel_last) {
  if (npq::kernels().mul.vmul == nullptr)
    throw ValueError("no native mul kernel on this CPU/build (use the lookup tables)");
  auto a = checked<uint8_t>(a_obj, "first operand codes", channel_last ? 4 : -1);
  auto b = checked<uint8_t>(b_obj, "second operand codes", channel_last ? 2 : -1);
  if (channel_last) {
    if (b.shape(0) != a.shape(0) || b.shape(1) != a.shape(3))
      throw ValueError("per-channel operand must be (batch, channels) of the full operand");
  } else if (shape_of(a) != shape_of(b)) {
    throw ValueError("operands must have the same shape");
  }
  check_binary_qparams(a_scale, a_zp, b_scale, b_zp, scale, zp);
  const npq::QMulParams p = npq::qmul_params(a_scale, a_zp, b_scale, b_zp, scale, zp);
  U8 y(shape_of(a));
  const uint8_t *ad = a.data(), *bd = b.data();
  uint8_t* yd = y.mutable_data();
  const size_t n = static_cast<size_t>(a.size());
  const size_t batch = channel_last ? a.shape(0) : 0, channels = channel_last ? a.shape(3) : 0;
  const size_t spatial = channel_last ? a.shape(1) * a.shape(2) : 0;
  py::gil_scoped_release nogil;
  if (channel_last)
    npq::qmul_channel_u8(batch, spatial, channels, ad, bd, yd, p);
  else
    npq::qmul_u8(n, ad, bd, yd, p);
  return y;
}

// Float32 GELU with the dispatched kernel (a new array of x's shape).
py::array_t<float> gelu_f32(const py::handle& x_obj, const std::string& approximate) {
  if (approximate != "none" && approximate != "tanh")
    throw ValueError("GELU approximate must be 'none' or 'tanh', got '" + approximate + "'");
  auto x = checked<float>(x_obj, "GELU input", -1);
  py::array_t<float> y(shape_of(x));
  const float* xd = x.data();
  float* yd = y.mutable_data();
  const size_t n = static_cast<size_t>(x.size());
  const bool tanh_form = approximate == "tanh";
  py::gil_scoped_release nogil;
  npq::gelu_f32(n, xd, yd, tanh_form);
  return y;
}

}  // namespace

void register_elementwise(py::module_& m) {
  m.def("lookup", &lookup, py::arg("x"), py::arg("table"),
        "table[x] for uint8 codes and a 256-entry uint8 table.");
  m.def("clamp_u8", &clamp, py::arg("x"), py::arg("lo"), py::arg("hi"),
        "min(max(x, lo), hi) for uint8 codes (quantized ReLU / ReLU6 / Hardtanh).");
  m.def("lookup2", &lookup2, py::arg("a"), py::arg("b"), py::arg("table"),
        "table[a << 8 | b] for same-shape uint8 codes and a 65,536-entry table.");
  m.def("lookup2_channel", &lookup2_channel, py::arg("a"), py::arg("b"), py::arg("table"),
        py::arg("channels_last"),
        "table[a << 8 | b] with b (batch, channels) broadcast over a's spatial positions.");
  m.def("qadd_u8", &qadd, py::arg("a"), py::arg("b"), py::arg("a_scale"), py::arg("a_zero_point"),
        py::arg("b_scale"), py::arg("b_zero_point"), py::arg("scale"), py::arg("zero_point"),
        py::arg("relu"),
        "Quantized add (add_relu) of same-shape quint8 codes with the dispatched kernel "
        "(cpu_info()['kernels']['add']; None: not available).");
  m.def("qmul_u8", &qmul, py::arg("a"), py::arg("b"), py::arg("a_scale"), py::arg("a_zero_point"),
        py::arg("b_scale"), py::arg("b_zero_point"), py::arg("scale"), py::arg("zero_point"),
        py::arg("channel_last") = false,
        "Quantized mul of quint8 codes with the dispatched kernel (cpu_info()['kernels']['mul']): "
        "same shape, or channel_last: NHWC a times b (batch, channels).");
  m.def("gelu_f32", &gelu_f32, py::arg("x"), py::arg("approximate") = "none",
        "GELU of a C-contiguous float32 array with the dispatched kernel "
        "(cpu_info()['kernels']['gelu']); the same bits on every ISA.");
  m.def(
      "nchw_to_nhwc_u8", [](const py::handle& x) { return relayout(x, true); }, py::arg("x"),
      "A C-contiguous (N, C, H, W) array of 8-bit codes copied to (N, H, W, C) order.");
  m.def(
      "nhwc_to_nchw_u8", [](const py::handle& x) { return relayout(x, false); }, py::arg("x"),
      "A C-contiguous (N, H, W, C) array of 8-bit codes copied to (N, C, H, W) order.");
  m.def("channel_range_u8", &channel_range, py::arg("x"), py::arg("start"), py::arg("count"),
        "Channels [start, start + count) of the last axis of C-contiguous 8-bit codes, copied.");
  m.def("channel_shuffle_nhwc", &channel_shuffle, py::arg("x"), py::arg("groups"),
        "ShuffleNet's channel shuffle of NHWC 8-bit codes: channel g * (C / groups) + j moves "
        "to j * groups + g.");
  m.def(
      "cat_channels", &cat_channels, py::arg("xs"), py::arg("tables"),
      py::arg("requant") = py::none(), py::arg("scale") = 1.0f, py::arg("zero_point") = 0,
      "Concatenates NHWC uint8 codes along channels, each through its table, requantized "
      "from its requant (scale, zero_point) to (scale, zero_point) by the add kernel, or copied.");
}

}  // namespace npq_bind
