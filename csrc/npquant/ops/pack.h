// Weight packing for the GEMM microkernels (layout: params.h PackedLayout).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "../params.h"

namespace npq {

struct AlignedFree {
  void operator()(void* p) const;
};
using AlignedBuffer = std::unique_ptr<uint8_t[], AlignedFree>;
// 64-byte aligned, zero-filled. Throws std::bad_alloc.
AlignedBuffer aligned_zeros(size_t bytes);

size_t round_up(size_t x, size_t m);

// Whether the weights (N rows of K, row n at w + n*w_stride) can be packed with
// `layout`: always, unless layout.w127 is set and some panel of nr columns holds
// more than kW127FixWords - 1 weights equal to -128.
bool weights_fit_layout(const int8_t* w, size_t n, size_t k, size_t w_stride,
                        const PackedLayout& layout);

// Immutable once built; safe to share between threads.
class PackedWeights {
 public:
  // w: N rows of K int8 each, row n at w + n*w_stride. Throws
  // std::invalid_argument if !weights_fit_layout(w, n, k, w_stride, layout).
  PackedWeights(const int8_t* w, size_t n, size_t k, size_t w_stride, const PackedLayout& layout);

  size_t n() const { return n_; }
  size_t k() const { return k_; }
  size_t kp() const { return kp_; }
  size_t n_padded() const { return round_up(n_, layout_.nr); }
  const PackedLayout& layout() const { return layout_; }
  size_t panel_stride() const { return panel_stride_; }
  // First panel of columns n0.. (n0 a multiple of nr).
  const void* panel(size_t n0) const { return data_.get() + (n0 / layout_.nr) * panel_stride_; }
  size_t bytes() const { return panel_stride_ * (n_padded() / layout_.nr); }

 private:
  size_t n_, k_, kp_, panel_stride_;
  PackedLayout layout_;
  AlignedBuffer data_;
};

}  // namespace npq
