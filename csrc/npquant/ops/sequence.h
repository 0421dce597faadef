// Float32 ops of sequence models with the process's kernels (dispatch.h): softmax and
// LayerNorm over rows, and LSTM and GRU cell updates of a batch. They never branch on an ISA; every
// kernel of a family gives the same bits (ukernel.h), so these ops do too.
#pragma once

#include <cstddef>
#include <cstdint>

namespace npq {

// An additive bias broadcast over the rows of a softmax: row r, written as the index
// (i_0, ..., i_{ndim-1}) over `shape` (row-major), reads the n floats at
// data + sum_d i_d * strides[d] (a stride of 0 broadcasts that dimension).
struct RowBias {
  const float* data;
  size_t ndim;
  const size_t* shape;
  const size_t* strides;  // in floats
};

// The offset (in floats) of row r's bias in b.data.
size_t row_offset(const RowBias& b, size_t r);

// y[r] = softmax(x[r] (+ bias row)) for rows of n floats (n >= 1), C-contiguous; y may
// equal x. In parallel over rows for large inputs.
void softmax_rows_f32(size_t rows, size_t n, const float* x, const RowBias* bias, float* y);

// LayerNorm of rows of n floats (n >= 1); gamma and beta null or n floats; y may equal x.
void layernorm_rows_f32(size_t rows, size_t n, const float* x, const float* gamma,
                        const float* beta, float eps, float* y);

// The cell updates of `batch` rows: gi and gh (batch, 4 * hidden) for the LSTM (gate
// order i, f, g, o), (batch, 3 * hidden) for the GRU (r, z, n); c, c_out, h, h_out
// (batch, hidden). c_out may equal c, h_out may equal h.
void lstm_cell_f32(size_t batch, size_t hidden, const float* gi, const float* gh, const float* c,
                   float* c_out, float* h_out);
void gru_cell_f32(size_t batch, size_t hidden, const float* gi, const float* gh, const float* h,
                  float* h_out);

}  // namespace npq
