// Embedding bindings: the row-wise quantized lookup + reduce. Arrays are checked
// here (dtypes, shapes, table geometry), indices and offsets by npq::check_bags
// before the kernel reads the table; the GIL is released for the kernel.
#include <string>

#include "../ops/embedding.h"
#include "common.h"

namespace npq_bind {

namespace {

py::array_t<float> embedding_bag_rowwise(const py::handle& codes_obj, int bits, long dim,
                                         const py::handle& scale_obj, const py::handle& bias_obj,
                                         const py::handle& indices_obj,
                                         const py::handle& offsets_obj,
                                         const py::handle& weights_obj, int mode,
                                         long padding_idx) {
  auto codes = checked<uint8_t>(codes_obj, "codes", 2);
  if (bits != 8 && bits != 4) throw ValueError("bits must be 8 or 4, got " + std::to_string(bits));
  const size_t d = at_least(1, dim, "embedding_dim");
  const size_t rows = codes.shape(0), row_bytes = codes.shape(1);
  const size_t want = bits == 8 ? d : (d + 1) / 2;
  if (row_bytes != want)
    throw ValueError("codes have " + std::to_string(row_bytes) + " bytes per row; a " +
                     std::to_string(bits) + "-bit table of embedding_dim " + std::to_string(d) +
                     " has " + std::to_string(want));
  const std::vector<float> scale = float_vector(scale_obj, "scale", rows, false);
  const std::vector<float> bias = float_vector(bias_obj, "bias", rows, false);
  if (mode < 0 || mode > 2) throw ValueError("mode must be 0 (sum), 1 (mean) or 2 (max)");
  auto indices = checked<int64_t>(indices_obj, "indices", 1);
  auto offsets = checked<int64_t>(offsets_obj, "offsets (bags + 1 entries)", 1);
  const size_t n = indices.shape(0), n_off = offsets.shape(0);
  std::vector<float> weights;
  if (!weights_obj.is_none()) {
    if (mode != 0) throw ValueError("per_sample_weights are only supported with mode 'sum'");
    weights = float_vector(weights_obj, "per_sample_weights", n, false);
  }
  npq::check_bags(rows, indices.data(), n, offsets.data(), n_off);
  const size_t bags = n_off - 1;
  py::array_t<float> out({static_cast<py::ssize_t>(bags), static_cast<py::ssize_t>(d)});
  const npq::RowwiseTable t{codes.data(), rows, d, row_bytes, bits, scale.data(), bias.data()};
  const int64_t* idx = indices.data();
  const int64_t* off = offsets.data();
  const float* w = weights_obj.is_none() ? nullptr : weights.data();
  float* y = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    npq::embedding_bag_rowwise(t, idx, n, off, bags, w, static_cast<npq::BagMode>(mode),
                               padding_idx, y);
  }
  return out;
}

}  // namespace

void register_embedding(py::module_& m) {
  m.def("embedding_bag_rowwise", &embedding_bag_rowwise, py::arg("codes"), py::arg("bits"),
        py::arg("dim"), py::arg("scale"), py::arg("bias"), py::arg("indices"), py::arg("offsets"),
        py::arg("per_sample_weights") = py::none(), py::arg("mode") = 0,
        py::arg("padding_idx") = -1,
        "Row-wise quantized (8- or 4-bit) embedding lookup + sum / mean / max over bags "
        "(numerics: csrc/npquant/ops/embedding.h).");
}

}  // namespace npq_bind
