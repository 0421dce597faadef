// Argument checks shared by the binding files: strict dtypes, C-contiguity,
// shapes and qparams, each failing with a clear Python exception.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../errors.h"

namespace npq_bind {

namespace py = pybind11;
using npq::ValueError;

// An array's shape as a vector (to allocate a result of the same shape).
inline std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

// An array's shape as Python prints a tuple, for error messages: "(2, 3)", "(4,)".
inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

template <class T>
const char* dtype_name();
template <>
inline const char* dtype_name<float>() {
  return "float32";
}
template <>
inline const char* dtype_name<uint8_t>() {
  return "uint8";
}
template <>
inline const char* dtype_name<int8_t>() {
  return "int8";
}
template <>
inline const char* dtype_name<int32_t>() {
  return "int32";
}
template <>
inline const char* dtype_name<int64_t>() {
  return "int64";
}

// Checks dtype, dimensionality and C-contiguity; returns the array unchanged.
template <class T>
py::array_t<T> checked(const py::handle& obj, const char* what, int ndim) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(what) + " must be a numpy.ndarray of " + dtype_name<T>() +
                         ", got " + std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::array arr = py::reinterpret_borrow<py::array>(obj);
  // Equivalent dtype (same kind, size and byte order), not the identical object:
  // unpickled arrays carry equal but distinct dtype objects.
  if (!py::array_t<T>::check_(arr))
    throw py::type_error(std::string(what) + " must have dtype " + dtype_name<T>() + ", got " +
                         std::string(py::str(arr.dtype())));
  if (ndim >= 0 && arr.ndim() != ndim)
    throw ValueError(std::string(what) + " must be " + std::to_string(ndim) + "-D, got " +
                     std::to_string(arr.ndim()) + "-D");
  if (!(arr.flags() & py::array::c_style))
    throw ValueError(std::string(what) +
                     " must be C-contiguous; pass numpy.ascontiguousarray(...)");
  return py::reinterpret_borrow<py::array_t<T>>(arr);
}

inline std::vector<float> float_vector(const py::handle& obj, const char* what, size_t n,
                                       bool allow_none) {
  if (obj.is_none()) {
    if (allow_none) return {};
    throw ValueError(std::string(what) + " is required");
  }
  auto a = checked<float>(obj, what, 1);
  if (static_cast<size_t>(a.shape(0)) != n)
    throw ValueError(std::string(what) + " must have " + std::to_string(n) + " elements, got " +
                     std::to_string(a.shape(0)));
  return std::vector<float>(a.data(), a.data() + n);
}

// v as a size, or a ValueError "<what> must be >= lo, got v".
inline size_t at_least(long lo, long v, const char* what) {
  if (v < lo)
    throw ValueError(std::string(what) + " must be >= " + std::to_string(lo) + ", got " +
                     std::to_string(v));
  return static_cast<size_t>(v);
}

inline void check_scale(float s, const char* what) {
  if (!(s > 0.0f) || !std::isfinite(s) || !std::isfinite(1.0f / s))
    throw ValueError(std::string(what) +
                     " must be a positive finite float32 whose reciprocal "
                     "is finite, got " +
                     std::to_string(s));
}

// Per-call checks of weight scales and bias, in branch-free loops the compiler
// vectorizes (a per-element check with a division cost ~1 us at N = 768, a
// tenth of a batch-1 Linear); the slow path only names the bad value.
inline void check_scales(const std::vector<float>& v, const char* what) {
  int ok = 1;
  for (float s : v) ok &= (s > 0.0f) & (s <= 3.40282347e38f) & (1.0f / s <= 3.40282347e38f);
  if (!ok)
    for (float s : v) check_scale(s, what);
}

inline void check_finite(const std::vector<float>& v, const char* what) {
  int ok = 1;
  for (float x : v) ok &= std::fabs(x) <= 3.40282347e38f;
  if (!ok) throw ValueError(std::string(what) + " must be finite");
}

inline void check_zp(int32_t z, const char* what) {
  if (z < 0 || z > 255)
    throw ValueError(std::string(what) + " must be in [0, 255] for quint8, got " +
                     std::to_string(z));
}

// Registers the conv classes and functions (bindings/conv.cc).
void register_conv(py::module_& m, py::module_& reference);
// Registers the pooling functions (bindings/pool.cc).
void register_pool(py::module_& m);
// Registers the elementwise table lookups (bindings/elementwise.cc).
void register_elementwise(py::module_& m);
// Registers the float32 ops of sequence models (bindings/sequence.cc).
void register_sequence(py::module_& m);
// Registers the dynamic LSTM / GRU time loop (bindings/rnn.cc).
void register_rnn(py::module_& m);
// Registers the quantized embedding lookup (bindings/embedding.cc).
void register_embedding(py::module_& m);

}  // namespace npq_bind
