// Scaled dot-product attention in float32 (MultiheadAttention's core after its input
// projections): per batch entry and head, scores = (q * scale) k^T, softmax over the
// keys with an optional additive mask, out = probabilities v, on the f32 GEMM tile and
// the softmax kernel (the same bits on every ISA). q, k and v are read in place through
// strides (e.g. thirds of one (N, L, 3E) projection), heads side by side in the last
// dimension; out is (N, L, E) with the heads side by side again.
#pragma once

#include <cstddef>

#include "sequence.h"

namespace npq {

struct AttentionArgs {
  size_t batch, heads, tgt, src, head_dim;
  // element (n, l, h * head_dim + d) at q + n * q_bs + l * q_rs + h * head_dim + d (floats)
  const float* q;
  size_t q_bs, q_rs;
  const float* k;  // (batch, src, heads * head_dim), likewise
  size_t k_bs, k_rs;
  const float* v;
  size_t v_bs, v_rs;
  float scale;          // q is multiplied by it first (one rounding), as torch does
  const RowBias* bias;  // null, or rows (n, h, l) over shape (batch, heads, tgt), src floats
  float* out;           // (batch, tgt, heads * head_dim), C-contiguous
  float* weights;       // null, or (batch, heads, tgt, src): the probabilities
};
void attention_f32(const AttentionArgs& a);

}  // namespace npq
