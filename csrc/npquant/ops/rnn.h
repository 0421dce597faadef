// The time loop of a dynamic quantized LSTM or GRU layer in C++ (npquant.nn.rnn's
// step-by-step loop without a Python call per step): the hidden projections through
// PackedLinear::run_dynamic, the cell updates through ops/sequence.h.
#pragma once

#include <cstddef>
#include <cstdint>

#include "linear.h"

namespace npq {

// One layer and direction of a dynamic quantized LSTM or GRU over a whole sequence, the
// loop of npquant.nn.rnn in C++: at each step t (descending with reverse), with bs rows
// (batch_sizes[t], or batch), gh = hh.run_dynamic(h[:bs]) (per-tensor activation
// qparams, full range), the cell update of rows < bs, with hr (LSTM proj_size) h[:bs] =
// hr.run_dynamic(new h), and out[t, :bs] = h[:bs]. Rows of out past bs are not written.
struct RnnSequenceArgs {
  bool lstm;                              // else GRU
  size_t steps, batch, hidden, out_size;  // out_size: proj_size, or hidden
  const float* gi;                        // (steps, batch, gates * hidden), input projections
  const int64_t* batch_sizes;             // null, or steps non-increasing values in [1, batch]
  bool reverse;
  float* h;    // (batch, out_size): the initial state in, the final state out
  float* c;    // (batch, hidden) for the LSTM, likewise; null for the GRU
  float* out;  // (steps, batch, out_size)
};
// Throws ValueError if a hidden state holds NaN or Inf (the dynamic Linear's check).
void rnn_sequence_dynamic(const PackedLinear& hh, const PackedLinear* hr, const RnnSequenceArgs& a);

}  // namespace npq
