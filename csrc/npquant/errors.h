// The exceptions the native core throws for bad input, in one place for ops/
// and bindings/. Each derives from the standard exception of its kind; the
// extension registers them (bindings/module.cc) as npquant._C.NativeValueError
// and NativeIndexError, subclasses of Python's ValueError and IndexError, so the
// message (which says what to do) reaches Python unchanged.
#pragma once

#include <stdexcept>

namespace npq {

// An invalid argument: a bad shape, size, qparam or value.
struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// An index or offset outside the table / index list.
struct IndexError : std::out_of_range {
  using std::out_of_range::out_of_range;
};

}  // namespace npq
