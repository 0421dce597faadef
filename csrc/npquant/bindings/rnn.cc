// Binding of the C++ time loop of a dynamic quantized LSTM / GRU layer (ops/rnn.h),
// which npquant.nn.quantized.dynamic's recurrent layers run (nn/rnn.py). Strict like
// the rest of _C: float32, C-contiguous, every shape checked against the packed weights.
#include <cstring>
#include <string>
#include <vector>

#include "../ops/rnn.h"
#include "common.h"

namespace npq_bind {

namespace {

using F32 = py::array_t<float>;

py::tuple rnn_sequence(const std::string& mode, const py::handle& gi_obj, const py::handle& h0_obj,
                       const py::handle& c0_obj, const py::handle& sizes_obj, bool reverse,
                       const npq::PackedLinear& hh, const py::object& hr_obj) {
  const npq::PackedLinear* hr =
      hr_obj.is_none() ? nullptr : hr_obj.cast<const npq::PackedLinear*>();
  if (mode != "LSTM" && mode != "GRU")
    throw ValueError("rnn_sequence_dynamic mode must be 'LSTM' or 'GRU', got '" + mode + "'");
  const bool lstm = mode == "LSTM";
  F32 gi = checked<float>(gi_obj, "input projections", 3);
  F32 h0 = checked<float>(h0_obj, "h_0", 2);
  const size_t steps = gi.shape(0), batch = gi.shape(1), out_size = h0.shape(1);
  const size_t hidden = hr ? hr->k() : out_size;
  if (steps == 0 || batch == 0)
    throw ValueError("rnn_sequence_dynamic needs at least one step and row");
  if (hr && (!lstm || hr->n() != out_size))
    throw ValueError("the output projection must be an LSTM's (hidden -> proj_size = h_0's width)");
  if (static_cast<size_t>(gi.shape(2)) != (lstm ? 4 : 3) * hidden)
    throw ValueError(mode + ": input projections of shape " + shape_str(gi) + " need " +
                     std::to_string((lstm ? 4 : 3) * hidden) + " gate values per row");
  if (static_cast<size_t>(h0.shape(0)) != batch)
    throw ValueError("h_0 of shape " + shape_str(h0) + " does not match the batch of " +
                     std::to_string(batch));
  if (hh.k() != out_size || hh.n() != static_cast<size_t>(gi.shape(2)))
    throw ValueError("the hidden projection (" + std::to_string(hh.k()) + " -> " +
                     std::to_string(hh.n()) + ") does not fit h_0 " + shape_str(h0) +
                     " and the gates " + shape_str(gi));
  F32 h(shape_of(h0));
  std::memcpy(h.mutable_data(), h0.data(), h0.size() * sizeof(float));
  F32 c;
  if (lstm) {
    if (c0_obj.is_none()) throw ValueError("an LSTM needs c_0");
    F32 c0 = checked<float>(c0_obj, "c_0", 2);
    if (static_cast<size_t>(c0.shape(0)) != batch || static_cast<size_t>(c0.shape(1)) != hidden)
      throw ValueError("c_0 must have shape (" + std::to_string(batch) + ", " +
                       std::to_string(hidden) + "), got " + shape_str(c0));
    c = F32(shape_of(c0));
    std::memcpy(c.mutable_data(), c0.data(), c0.size() * sizeof(float));
  } else if (!c0_obj.is_none()) {
    throw ValueError("a GRU has no cell state: pass c_0=None");
  }
  py::array_t<int64_t> sizes;
  if (!sizes_obj.is_none()) {
    sizes = checked<int64_t>(sizes_obj, "batch_sizes", 1);
    if (static_cast<size_t>(sizes.shape(0)) != steps)
      throw ValueError("batch_sizes must have one entry per step (" + std::to_string(steps) + ")");
    for (size_t t = 0; t < steps; ++t) {
      const int64_t v = sizes.data()[t];
      if (v < 1 || static_cast<size_t>(v) > batch || (t && v > sizes.data()[t - 1]))
        throw ValueError("batch_sizes must be non-increasing values in [1, " +
                         std::to_string(batch) + "]");
    }
  }
  F32 out({steps, batch, out_size});
  std::memset(out.mutable_data(), 0, out.size() * sizeof(float));
  npq::RnnSequenceArgs a{lstm,
                         steps,
                         batch,
                         hidden,
                         out_size,
                         gi.data(),
                         sizes_obj.is_none() ? nullptr : sizes.data(),
                         reverse,
                         h.mutable_data(),
                         lstm ? c.mutable_data() : nullptr,
                         out.mutable_data()};
  {
    py::gil_scoped_release nogil;
    npq::rnn_sequence_dynamic(hh, hr, a);
  }
  return py::make_tuple(out, h, lstm ? py::object(c) : py::object(py::none()));
}

}  // namespace

void register_rnn(py::module_& m) {
  m.def("rnn_sequence_dynamic", &rnn_sequence, py::arg("mode"), py::arg("gi"), py::arg("h0"),
        py::arg("c0"), py::arg("batch_sizes"), py::arg("reverse"), py::arg("hh"),
        py::arg("hr") = py::none(),
        "(output (T, B, out), h_n, c_n or None): one layer and direction of a dynamic quantized "
        "LSTM or GRU over the input projections gi (T, B, gates * hidden), the hidden "
        "projection hh (and the LSTM output projection hr) as dynamic int8 Linear layers, "
        "batch_sizes for packed sequences (None: every step has B rows).");
}

}  // namespace npq_bind
