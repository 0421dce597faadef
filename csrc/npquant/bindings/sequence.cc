// Bindings of the float32 ops of sequence models (ops/sequence.h): softmax, LayerNorm,
// the LSTM and GRU cell updates. Strict like the rest of _C (float32, C-contiguous, shapes
// checked); the Python layer (nn/activation.py, nn/normalization.py, nn/rnn.py) makes its arrays
// fit.
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "../ops/sequence.h"
#include "common.h"

namespace npq_bind {

namespace {

using F32 = py::array_t<float>;

std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// The output array: a new one of x's shape, or `out` (x's shape, float32, C-contiguous;
// it may be x itself).
F32 output_like(const F32& x, const py::handle& out_obj, const char* what) {
  if (out_obj.is_none()) return F32(shape_of(x));
  F32 out = checked<float>(out_obj, what, static_cast<int>(x.ndim()));
  if (shape_of(out) != shape_of(x))
    throw ValueError(std::string(what) + " must have the input's shape " + shape_str(x) + ", got " +
                     shape_str(out));
  if (!out.writeable()) throw ValueError(std::string(what) + " is read-only");
  return out;
}

F32 softmax(const py::handle& x_obj, const py::handle& bias_obj, const py::handle& out_obj) {
  F32 x = checked<float>(x_obj, "softmax input", -1);
  if (x.ndim() < 1) throw ValueError("softmax input must have at least one dimension");
  F32 y = output_like(x, out_obj, "softmax out");
  const size_t n = x.shape(x.ndim() - 1), size = x.size();
  if (size == 0) return y;
  const size_t rows = size / n, nd = x.ndim() - 1;
  std::vector<size_t> shape(x.shape(), x.shape() + nd), strides(nd);
  F32 bias;
  npq::RowBias rb{nullptr, nd, shape.data(), strides.data()};
  if (!bias_obj.is_none()) {
    bias = checked<float>(bias_obj, "softmax bias", static_cast<int>(x.ndim()));
    size_t stride = n;
    for (size_t d = x.ndim(); d-- > 0;) {
      const size_t b = bias.shape(d), want = x.shape(d);
      if (b != want && !(b == 1 && d + 1 < static_cast<size_t>(x.ndim())))
        throw ValueError("softmax bias of shape " + shape_str(bias) +
                         " does not broadcast to the input's " + shape_str(x) +
                         " (each dimension equal or 1, the last equal)");
      if (d + 1 < static_cast<size_t>(x.ndim())) {
        strides[d] = b == 1 ? 0 : stride;
        stride *= b;
      }
    }
    rb.data = bias.data();
  }
  const float* xd = x.data();
  float* yd = y.mutable_data();
  py::gil_scoped_release nogil;
  npq::softmax_rows_f32(rows, n, xd, rb.data ? &rb : nullptr, yd);
  return y;
}

const float* affine(const py::handle& obj, const char* what, size_t n, F32* keep) {
  if (obj.is_none()) return nullptr;
  *keep = checked<float>(obj, what, -1);
  if (static_cast<size_t>(keep->size()) != n)
    throw ValueError(std::string(what) + " must have " + std::to_string(n) + " elements, got " +
                     std::to_string(keep->size()));
  return keep->data();
}

F32 layer_norm(const py::handle& x_obj, long normalized_size, const py::handle& w_obj,
               const py::handle& b_obj, float eps, const py::handle& out_obj) {
  F32 x = checked<float>(x_obj, "LayerNorm input", -1);
  const size_t n = at_least(1, normalized_size, "normalized_size");
  if (static_cast<size_t>(x.size()) % n != 0)
    throw ValueError("LayerNorm input of shape " + shape_str(x) + " is not rows of " +
                     std::to_string(n) + " values");
  if (!(eps >= 0.0f) || !std::isfinite(eps))
    throw ValueError("LayerNorm eps must be finite and >= 0, got " + std::to_string(eps));
  F32 wk, bk;
  const float* w = affine(w_obj, "LayerNorm weight", n, &wk);
  const float* b = affine(b_obj, "LayerNorm bias", n, &bk);
  F32 y = output_like(x, out_obj, "LayerNorm out");
  const size_t rows = x.size() / n;
  const float* xd = x.data();
  float* yd = y.mutable_data();
  py::gil_scoped_release nogil;
  npq::layernorm_rows_f32(rows, n, xd, w, b, eps, yd);
  return y;
}

// (batch, gates * hidden) projections and a (batch, hidden) state of one cell update.
size_t cell_shapes(const F32& gi, const F32& gh, const F32& state, size_t gates, const char* cell,
                   const char* state_name) {
  const size_t batch = state.shape(0), hidden = state.shape(1);
  for (const F32* g : {&gi, &gh})
    if (static_cast<size_t>(g->shape(0)) != batch ||
        static_cast<size_t>(g->shape(1)) != gates * hidden)
      throw ValueError(std::string(cell) + ": the projections must have shape (" +
                       std::to_string(batch) + ", " + std::to_string(gates * hidden) + ") for " +
                       state_name + " of shape " + shape_str(state) + ", got " + shape_str(gi) +
                       " and " + shape_str(gh));
  return hidden;
}

py::tuple lstm_cell(const py::handle& gi_obj, const py::handle& gh_obj, const py::handle& c_obj) {
  F32 gi = checked<float>(gi_obj, "LSTM input projection", 2);
  F32 gh = checked<float>(gh_obj, "LSTM hidden projection", 2);
  F32 c = checked<float>(c_obj, "LSTM cell state", 2);
  const size_t hidden = cell_shapes(gi, gh, c, 4, "LSTM cell", "c"), batch = c.shape(0);
  F32 h_out(shape_of(c)), c_out(shape_of(c));
  const float *gid = gi.data(), *ghd = gh.data(), *cd = c.data();
  float *hd = h_out.mutable_data(), *cod = c_out.mutable_data();
  {
    py::gil_scoped_release nogil;
    npq::lstm_cell_f32(batch, hidden, gid, ghd, cd, cod, hd);
  }
  return py::make_tuple(h_out, c_out);
}

F32 gru_cell(const py::handle& gi_obj, const py::handle& gh_obj, const py::handle& h_obj) {
  F32 gi = checked<float>(gi_obj, "GRU input projection", 2);
  F32 gh = checked<float>(gh_obj, "GRU hidden projection", 2);
  F32 h = checked<float>(h_obj, "GRU hidden state", 2);
  const size_t hidden = cell_shapes(gi, gh, h, 3, "GRU cell", "h"), batch = h.shape(0);
  F32 h_out(shape_of(h));
  const float *gid = gi.data(), *ghd = gh.data(), *hd = h.data();
  float* hod = h_out.mutable_data();
  py::gil_scoped_release nogil;
  npq::gru_cell_f32(batch, hidden, gid, ghd, hd, hod);
  return h_out;
}

}  // namespace

void register_sequence(py::module_& m) {
  m.def("softmax_f32", &softmax, py::arg("x"), py::arg("bias") = py::none(),
        py::arg("out") = py::none(),
        "Softmax over the last axis of a C-contiguous float32 array, of x + bias when bias "
        "(broadcast to x, each dimension equal or 1, the last equal) is given, into out (x's "
        "shape; may be x) or a new array. The dispatched kernel "
        "(cpu_info()['kernels']['softmax']); the same bits on every ISA.");
  m.def("layer_norm_f32", &layer_norm, py::arg("x"), py::arg("normalized_size"),
        py::arg("weight") = py::none(), py::arg("bias") = py::none(), py::arg("eps") = 1e-5f,
        py::arg("out") = py::none(),
        "LayerNorm over rows of normalized_size values of a C-contiguous float32 array "
        "(weight and bias: None or normalized_size values). The dispatched kernel "
        "(cpu_info()['kernels']['layernorm']); the same bits on every ISA.");
  m.def("lstm_cell_f32", &lstm_cell, py::arg("gi"), py::arg("gh"), py::arg("c"),
        "(h, c) after one LSTM step from the input and hidden projections (batch, 4 * hidden), "
        "biases included, and the cell state c (batch, hidden); torch's gate order i, f, g, o.");
  m.def("gru_cell_f32", &gru_cell, py::arg("gi"), py::arg("gh"), py::arg("h"),
        "h after one GRU step from the input and hidden projections (batch, 3 * hidden), biases "
        "included, and the hidden state h (batch, hidden); torch's gate order r, z, n.");
}

}  // namespace npq_bind
