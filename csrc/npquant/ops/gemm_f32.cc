#include "gemm_f32.h"

#include <algorithm>
#include <vector>

#include "threadpool.h"

namespace npq {

namespace {

// Rows per parallel task (a multiple of any MR up to 8), and the fewest MACs worth a
// parallel region (a region costs a few microseconds; ~100 MACs per ns here).
constexpr size_t kRowsPerTask = 96;
constexpr size_t kParallelMacs = size_t{1} << 20;

// Columns [n0, n0 + nc) of op(b) as a k x NR panel: b itself, or b's rows packed.
const float* panel(const float* b, size_t ldb, bool b_trans, size_t k, size_t n0, size_t nc,
                   size_t nr, std::vector<float>* buf, size_t* stride) {
  if (!b_trans) {
    *stride = ldb;
    return b + n0;
  }
  buf->resize(k * nr);
  float* p = buf->data();
  // Blocks of 8 k: the nc rows' cache lines stay in L1 while the panel is written in order.
  const float* rows = b + n0 * ldb;
  for (size_t k0 = 0; k0 < k; k0 += 8) {
    const size_t k1 = std::min(k, k0 + 8);
    for (size_t kk = k0; kk < k1; ++kk)
      for (size_t j = 0; j < nc; ++j) p[kk * nr + j] = rows[j * ldb + kk];
  }
  *stride = nr;
  return p;
}

}  // namespace

void gemm_f32(const FGemmKernel& kern, size_t m, size_t n, size_t k, const float* a, size_t lda,
              const float* b, size_t ldb, bool b_trans, const float* bias, float* c, size_t ldc,
              bool parallel) {
  if (m == 0 || n == 0) return;
  const size_t nr = kern.nr, mr = kern.mr;
  const size_t panels = (n + nr - 1) / nr;
  const size_t row_blocks = (m + kRowsPerTask - 1) / kRowsPerTask;
  // One task: a panel of NR columns over rows [r0, r1); the panel stays in L1 / L2
  // while the kernel walks the rows MR at a time.
  auto task = [&](size_t p, size_t r0, size_t r1, std::vector<float>* buf) {
    const size_t n0 = p * nr, nc = std::min(nr, n - n0);
    size_t bs;
    const float* bp = panel(b, ldb, b_trans, k, n0, nc, nr, buf, &bs);
    for (size_t r = r0; r < r1; r += mr)
      kern.fn(std::min(mr, r1 - r), nc, k, a + r * lda, lda, bp, bs, bias ? bias + n0 : nullptr,
              c + r * ldc + n0, ldc);
  };
  if (!parallel || get_num_threads() == 1 || m * n * k < kParallelMacs || panels * row_blocks < 2) {
    std::vector<float> buf;
    for (size_t p = 0; p < panels; ++p) task(p, 0, m, &buf);
    return;
  }
  parallel_for(panels * row_blocks, [&](size_t t) {
    thread_local std::vector<float> buf;
    const size_t p = t / row_blocks, rb = t % row_blocks;
    task(p, rb * kRowsPerTask, std::min(m, (rb + 1) * kRowsPerTask), &buf);
  });
}

void gemm_f32(size_t m, size_t n, size_t k, const float* a, size_t lda, const float* b, size_t ldb,
              bool b_trans, const float* bias, float* c, size_t ldc, bool parallel) {
  gemm_f32(kernels().fgemm, m, n, k, a, lda, b, ldb, b_trans, bias, c, ldc, parallel);
}

}  // namespace npq
