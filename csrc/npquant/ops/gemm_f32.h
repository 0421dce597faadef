// Float32 GEMM with the process's f32 GEMM tile (dispatch.h FGemmKernel): every output
// is one fma chain over k in order (ukernel.h f32_gemm_fn), so the result has the same
// bits whatever the kernel, tile, blocking and thread count.
#pragma once

#include <cstddef>

#include "../dispatch.h"

namespace npq {

// c (m x n, row stride ldc) = a (m x k, row stride lda) * op(b) (+ bias), bias null or n
// floats. op(b) is b itself (k x n, row stride ldb) or, with b_trans, the transpose of b
// (n x k, row stride ldb: a Linear layer's weight), repacked per panel of NR columns.
// In parallel over panels and row blocks when `parallel` and the product is large.
void gemm_f32(size_t m, size_t n, size_t k, const float* a, size_t lda, const float* b, size_t ldb,
              bool b_trans, const float* bias, float* c, size_t ldc, bool parallel = true);
// The same with an explicit kernel (tests, bench).
void gemm_f32(const FGemmKernel& kern, size_t m, size_t n, size_t k, const float* a, size_t lda,
              const float* b, size_t ldb, bool b_trans, const float* bias, float* c, size_t ldc,
              bool parallel);

}  // namespace npq
