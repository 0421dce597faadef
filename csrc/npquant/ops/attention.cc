#include "attention.h"

#include <vector>

#include "../dispatch.h"
#include "gemm_f32.h"
#include "threadpool.h"

namespace npq {

void attention_f32(const AttentionArgs& a) {
  const size_t hd = a.head_dim, e = a.heads * hd, L = a.tgt, S = a.src;
  const f32_vsoftmax_fn softmax = kernels().softmax.fn;
  // One (batch entry, head) per task: two GEMMs and L softmax rows on buffers that stay
  // in L1 / L2 (L x D scaled queries, L x S scores).
  auto task = [&](size_t t) {
    thread_local std::vector<float> qs, p;
    const size_t n = t / a.heads, h = t % a.heads;
    qs.resize(L * hd);
    const float* q = a.q + n * a.q_bs + h * hd;
    for (size_t l = 0; l < L; ++l)
      for (size_t d = 0; d < hd; ++d) qs[l * hd + d] = q[l * a.q_rs + d] * a.scale;
    float* probs = a.weights ? a.weights + t * L * S : (p.resize(L * S), p.data());
    gemm_f32(L, S, hd, qs.data(), hd, a.k + n * a.k_bs + h * hd, a.k_rs, true, nullptr, probs, S,
             false);
    for (size_t l = 0; l < L; ++l) {
      const float* b = a.bias ? a.bias->data + row_offset(*a.bias, t * L + l) : nullptr;
      softmax(S, probs + l * S, b, probs + l * S);
    }
    gemm_f32(L, hd, S, probs, S, a.v + n * a.v_bs + h * hd, a.v_rs, false, nullptr,
             a.out + n * L * e + h * hd, e, false);
  };
  const size_t tasks = a.batch * a.heads;
  if (get_num_threads() == 1 || tasks < 2) {
    for (size_t t = 0; t < tasks; ++t) task(t);
    return;
  }
  parallel_for(tasks, task);
}

}  // namespace npq
