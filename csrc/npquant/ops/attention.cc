#include "attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../dispatch.h"
#include "gemm_f32.h"
#include "threadpool.h"

namespace npq {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Whether every |x| < bound over rows of d floats (row r at x + r * stride); false for
// NaN. Branch-free, so the compiler vectorizes it.
bool all_below(const float* x, size_t rows, size_t stride, size_t d, float bound) {
  int ok = 1;
  for (size_t r = 0; r < rows; ++r) {
    const float* row = x + r * stride;
    for (size_t i = 0; i < d; ++i) ok &= std::fabs(row[i]) < bound;
  }
  return ok != 0;
}

// The keys of task t (batch entry n, head h) that can get a probability above zero:
// [0, live). Keys past it are masked (-inf) in every query row of the task, so their
// probabilities are exactly +0; skipping them (scores not computed, values not read)
// changes no bit of the output when the skipped scores cannot be NaN or +inf (|q| and
// |k| bounded so that no dot product reaches FLT_MAX) and the skipped values are finite
// (fma(+0, v, acc) = acc; acc is never -0). Otherwise, and when every key is masked
// (a NaN row), all S keys.
size_t live_keys(const AttentionArgs& a, size_t t, const float* q, const float* k, const float* v) {
  const size_t L = a.tgt, S = a.src, hd = a.head_dim;
  if (!a.bias) return S;
  size_t live = 0, prev = SIZE_MAX;
  for (size_t l = 0; l < L && live < S; ++l) {
    const size_t off = row_offset(*a.bias, t * L + l);
    if (off == prev) continue;  // a mask broadcast over the rows: scanned once
    prev = off;
    const float* b = a.bias->data + off;
    size_t j = S;
    while (j > live && b[j - 1] == -kInf) --j;
    live = j > live ? j : live;
  }
  if (live == 0 || live == S) return S;
  // |q * scale| and |k| below sqrt(1e38 / D): no skipped dot product reaches FLT_MAX
  const float bound = std::sqrt(1e38f / static_cast<float>(hd));
  const float qbound = bound / std::fabs(a.scale);
  const bool safe = all_below(q, L, a.q_rs, hd, qbound) &&
                    all_below(k + live * a.k_rs, S - live, a.k_rs, hd, bound) &&
                    all_below(v + live * a.v_rs, S - live, a.v_rs, hd, kInf);
  return safe ? live : S;
}

}  // namespace

void attention_f32(const AttentionArgs& a) {
  const size_t hd = a.head_dim, e = a.heads * hd, L = a.tgt, S = a.src;
  const f32_vsoftmax_fn softmax = kernels().softmax.fn;
  // One (batch entry, head) per task: two GEMMs and L softmax rows on buffers that stay
  // in L1 / L2 (L x D scaled queries, L x S scores).
  auto task = [&](size_t t) {
    thread_local std::vector<float> qs, p;
    const size_t n = t / a.heads, h = t % a.heads;
    const float* q = a.q + n * a.q_bs + h * hd;
    const float* k = a.k + n * a.k_bs + h * hd;
    const float* v = a.v + n * a.v_bs + h * hd;
    const size_t live = live_keys(a, t, q, k, v);
    qs.resize(L * hd);
    for (size_t l = 0; l < L; ++l)
      for (size_t d = 0; d < hd; ++d) qs[l * hd + d] = q[l * a.q_rs + d] * a.scale;
    float* probs = a.weights ? a.weights + t * L * S : (p.resize(L * S), p.data());
    gemm_f32(L, live, hd, qs.data(), hd, k, a.k_rs, true, nullptr, probs, S, false);
    for (size_t l = 0; l < L; ++l) {
      float* row = probs + l * S;
      const float* b = a.bias ? a.bias->data + row_offset(*a.bias, t * L + l) : nullptr;
      softmax(live, row, b, row);
      std::fill(row + live, row + S, 0.0f);
    }
    gemm_f32(L, hd, live, probs, S, v, a.v_rs, false, nullptr, a.out + n * L * e + h * hd, e,
             false);
  };
  const size_t tasks = a.batch * a.heads;
  if (get_num_threads() == 1 || tasks < 2) {
    for (size_t t = 0; t < tasks; ++t) task(t);
    return;
  }
  parallel_for(tasks, task);
}

}  // namespace npq
