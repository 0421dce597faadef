#include "sequence.h"

#include <algorithm>
#include <vector>

#include "../dispatch.h"
#include "threadpool.h"

namespace npq {

namespace {

// Rows per parallel task, and the fewest floats worth a parallel region (a region
// costs a few microseconds; softmax about 1 ns per float on one AVX-512 core).
constexpr size_t kParallelFloats = size_t{1} << 15;

template <class Body>
void for_rows(size_t rows, size_t n, const Body& body) {
  const size_t total = rows * n;
  if (total < kParallelFloats || get_num_threads() == 1 || rows < 2) {
    body(size_t{0}, rows);
    return;
  }
  const size_t per_task = std::max<size_t>(1, (kParallelFloats / 4) / n);
  const size_t tasks = (rows + per_task - 1) / per_task;
  parallel_for(tasks, [&](size_t t) { body(t * per_task, std::min(rows, (t + 1) * per_task)); });
}

}  // namespace

size_t row_offset(const RowBias& b, size_t r) {
  size_t off = 0;
  for (size_t d = b.ndim; d-- > 0;) {
    off += (r % b.shape[d]) * b.strides[d];
    r /= b.shape[d];
  }
  return off;
}

void softmax_rows_f32(size_t rows, size_t n, const float* x, const RowBias* bias, float* y) {
  const f32_vsoftmax_fn softmax = kernels().softmax.fn;
  for_rows(rows, n, [&](size_t r0, size_t r1) {
    if (!bias) {
      for (size_t r = r0; r < r1; ++r) softmax(n, x + r * n, nullptr, y + r * n);
      return;
    }
    for (size_t r = r0; r < r1; ++r)
      softmax(n, x + r * n, bias->data + row_offset(*bias, r), y + r * n);
  });
}

void layernorm_rows_f32(size_t rows, size_t n, const float* x, const float* gamma,
                        const float* beta, float eps, float* y) {
  const f32_layernorm_fn layernorm = kernels().layernorm.fn;
  for_rows(rows, n, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) layernorm(n, x + r * n, gamma, beta, eps, y + r * n);
  });
}

void lstm_cell_f32(size_t batch, size_t hidden, const float* gi, const float* gh, const float* c,
                   float* c_out, float* h_out) {
  const f32_vlstm_fn lstm = kernels().lstm.fn;
  const size_t g = 4 * hidden;
  for (size_t b = 0; b < batch; ++b)
    lstm(hidden, gi + b * g, gh + b * g, c + b * hidden, c_out + b * hidden, h_out + b * hidden);
}

void gru_cell_f32(size_t batch, size_t hidden, const float* gi, const float* gh, const float* h,
                  float* h_out) {
  const f32_vgru_fn gru = kernels().gru.fn;
  const size_t g = 3 * hidden;
  for (size_t b = 0; b < batch; ++b)
    gru(hidden, gi + b * g, gh + b * g, h + b * hidden, h_out + b * hidden);
}

}  // namespace npq
