// Bindings of the float32 ops of sequence models (ops/sequence.h, gemm_f32.h,
// attention.h): softmax, LayerNorm, the LSTM and GRU cell updates, the float Linear
// product and scaled dot-product attention. Strict like the rest of _C (float32, C-contiguous,
// shapes checked); the Python layer (nn/activation.py, nn/normalization.py, nn/rnn.py) makes its
// arrays fit.
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "../ops/attention.h"
#include "../ops/gemm_f32.h"
#include "../ops/sequence.h"
#include "common.h"

namespace npq_bind {

namespace {

using F32 = py::array_t<float>;

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

// An additive bias broadcast over the rows of `shape` (its last entry the row length):
// the same number of dimensions, each equal or 1, the last equal.
struct Bias {
  F32 array;
  std::vector<size_t> shape, strides;
  npq::RowBias rows{nullptr, 0, nullptr, nullptr};
};

void broadcast_bias(const py::handle& obj, const std::vector<size_t>& shape, const char* what,
                    Bias* out) {
  const int nd = static_cast<int>(shape.size());
  out->array = checked<float>(obj, what, nd);
  const F32& b = out->array;
  out->shape.assign(shape.begin(), shape.end() - 1);
  out->strides.assign(nd - 1, 0);
  size_t stride = shape.back();
  for (int d = nd; d-- > 0;) {
    const size_t have = b.shape(d), want = shape[d];
    if (have != want && !(have == 1 && d + 1 < nd)) {
      std::string s = "(";
      for (int i = 0; i < nd; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
      throw ValueError(std::string(what) + " of shape " + shape_str(b) + " does not broadcast to " +
                       s + ") (each dimension equal or 1, the last equal)");
    }
    if (d + 1 < nd) {
      out->strides[d] = have == 1 ? 0 : stride;
      stride *= have;
    }
  }
  out->rows =
      npq::RowBias{b.data(), static_cast<size_t>(nd - 1), out->shape.data(), out->strides.data()};
}

F32 softmax(const py::handle& x_obj, const py::handle& bias_obj, const py::handle& out_obj) {
  F32 x = checked<float>(x_obj, "softmax input", -1);
  if (x.ndim() < 1) throw ValueError("softmax input must have at least one dimension");
  F32 y = output_like(x, out_obj, "softmax out");
  const size_t n = x.shape(x.ndim() - 1), size = x.size();
  if (size == 0) return y;
  const size_t rows = size / n;
  Bias bias;
  if (!bias_obj.is_none())
    broadcast_bias(bias_obj, std::vector<size_t>(x.shape(), x.shape() + x.ndim()), "softmax bias",
                   &bias);
  const npq::RowBias* rb = bias_obj.is_none() ? nullptr : &bias.rows;
  const float* xd = x.data();
  float* yd = y.mutable_data();
  py::gil_scoped_release nogil;
  npq::softmax_rows_f32(rows, n, xd, rb, yd);
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

F32 linear(const py::handle& x_obj, const py::handle& w_obj, const py::handle& b_obj) {
  F32 x = checked<float>(x_obj, "Linear input", 2);
  F32 w = checked<float>(w_obj, "Linear weight", 2);
  const size_t m = x.shape(0), k = x.shape(1), n = w.shape(0);
  if (static_cast<size_t>(w.shape(1)) != k)
    throw ValueError("Linear input has " + std::to_string(k) + " features but the weight " +
                     shape_str(w) + " expects " + std::to_string(w.shape(1)));
  F32 bk;
  const float* b = affine(b_obj, "Linear bias", n, &bk);
  F32 y({m, n});
  const float *xd = x.data(), *wd = w.data();
  float* yd = y.mutable_data();
  py::gil_scoped_release nogil;
  npq::gemm_f32(m, n, k, xd, k, wd, k, true, b, yd, n);
  return y;
}

// A 3-D float32 array read in place: any non-negative strides, the last axis contiguous.
struct View3 {
  py::array array;
  const float* data;
  size_t s0, s1;  // strides of axes 0 and 1, in floats
};

View3 view3(const py::handle& obj, const char* what) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(what) + " must be a numpy.ndarray of float32");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!py::array_t<float>::check_(a))
    throw py::type_error(std::string(what) + " must have dtype float32, got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != 3) throw ValueError(std::string(what) + " must be 3-D (batch, length, embed)");
  const py::ssize_t f = sizeof(float);
  if (a.strides(2) != f || a.strides(0) < 0 || a.strides(1) < 0 || a.strides(0) % f ||
      a.strides(1) % f)
    throw ValueError(std::string(what) +
                     " must have a contiguous last axis and non-negative strides; pass "
                     "numpy.ascontiguousarray(...)");
  return View3{a, static_cast<const float*>(a.data()), static_cast<size_t>(a.strides(0) / f),
               static_cast<size_t>(a.strides(1) / f)};
}

py::tuple attention(const py::handle& q_obj, const py::handle& k_obj, const py::handle& v_obj,
                    long num_heads, float scale, const py::handle& bias_obj, bool need_weights) {
  const View3 q = view3(q_obj, "attention query"), k = view3(k_obj, "attention key"),
              v = view3(v_obj, "attention value");
  const size_t heads = at_least(1, num_heads, "num_heads");
  const size_t batch = q.array.shape(0), tgt = q.array.shape(1), e = q.array.shape(2);
  const size_t src = k.array.shape(1);
  if (e % heads != 0)
    throw ValueError("embed_dim " + std::to_string(e) + " is not a multiple of num_heads " +
                     std::to_string(heads));
  for (const View3* t : {&k, &v})
    if (static_cast<size_t>(t->array.shape(0)) != batch ||
        static_cast<size_t>(t->array.shape(1)) != src ||
        static_cast<size_t>(t->array.shape(2)) != e)
      throw ValueError("attention key and value must be (" + std::to_string(batch) + ", S, " +
                       std::to_string(e) + ") with the same S; got " + shape_str(k.array) +
                       " and " + shape_str(v.array));
  if (batch == 0 || tgt == 0 || src == 0) throw ValueError("attention needs non-empty inputs");
  if (!std::isfinite(scale)) throw ValueError("attention scale must be finite");
  Bias bias;
  if (!bias_obj.is_none())
    broadcast_bias(bias_obj, {batch, heads, tgt, src}, "attention mask", &bias);
  F32 out({batch, tgt, e});
  py::object weights = py::none();
  float* wd = nullptr;
  if (need_weights) {
    F32 w({batch, heads, tgt, src});
    wd = w.mutable_data();
    weights = w;
  }
  const npq::AttentionArgs a{batch,
                             heads,
                             tgt,
                             src,
                             e / heads,
                             q.data,
                             q.s0,
                             q.s1,
                             k.data,
                             k.s0,
                             k.s1,
                             v.data,
                             v.s0,
                             v.s1,
                             scale,
                             bias_obj.is_none() ? nullptr : &bias.rows,
                             out.mutable_data(),
                             wd};
  {
    py::gil_scoped_release nogil;
    npq::attention_f32(a);
  }
  return py::make_tuple(out, weights);
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
  m.def("linear_f32", &linear, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
        "x @ weight.T + bias in float32 (x (M, K), weight (N, K), C-contiguous) with the "
        "dispatched GEMM tile (cpu_info()['kernels']['fgemm']): every output one fma chain "
        "over K in order, the same bits on every ISA.");
  m.def("attention_f32", &attention, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("num_heads"),
        py::arg("scale"), py::arg("bias") = py::none(), py::arg("need_weights") = false,
        "(out (N, L, E), weights (N, H, L, S) or None): softmax((q * scale) k^T + bias) v per "
        "batch entry and head; q (N, L, E), k and v (N, S, E) read in place (any strides, the "
        "last axis contiguous), bias broadcast to (N, H, L, S). The GEMM tile and softmax "
        "kernel: the same bits on every ISA.");
}

}  // namespace npq_bind
