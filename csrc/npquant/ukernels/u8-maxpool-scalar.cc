// Quantized max pooling, portable: for each output pixel, the bytewise max over its
// ks input rows (ukernel.h: u8_maxpool_fn). Max is exact on codes (scale and zero
// point are shared by input and output), so every kernel of the family gives these bits.
// The inner loop is restrict-qualified so compilers vectorize it (NEON, SSE2).
#include "../ukernel.h"

namespace npq {

namespace {

void max_into(uint8_t* __restrict__ y, const uint8_t* __restrict__ x, size_t c) {
  for (size_t j = 0; j < c; ++j) y[j] = x[j] > y[j] ? x[j] : y[j];
}

}  // namespace

void u8_maxpool__scalar(size_t n, size_t ks, const uint8_t* const* ind, size_t c, uint8_t* y) {
  for (size_t i = 0; i < n; ++i, ind += ks, y += c) {
    for (size_t j = 0; j < c; ++j) y[j] = ind[0][j];
    for (size_t t = 1; t < ks; ++t) max_into(y, ind[t], c);
  }
}

}  // namespace npq
