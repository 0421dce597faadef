#include "pack.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

namespace npq {

void AlignedFree::operator()(void* p) const { std::free(p); }

AlignedBuffer aligned_zeros(size_t bytes) {
  const size_t size = round_up(bytes == 0 ? 64 : bytes, 64);
  void* p = std::aligned_alloc(64, size);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, size);
  return AlignedBuffer(static_cast<uint8_t*>(p));
}

size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

bool weights_fit_layout(const int8_t* w, size_t n, size_t k, size_t w_stride,
                        const PackedLayout& layout) {
  if (!layout.w127) return true;
  for (size_t n0 = 0; n0 < n; n0 += layout.nr) {
    size_t count = 0;
    for (size_t j = n0; j < n && j < n0 + layout.nr; ++j)
      for (size_t kk = 0; kk < k; ++kk) count += w[j * w_stride + kk] == -128;
    if (count > kW127FixWords - 1) return false;
  }
  return true;
}

PackedWeights::PackedWeights(const int8_t* w, size_t n, size_t k, size_t w_stride,
                             const PackedLayout& layout)
    : n_(n), k_(k), layout_(layout) {
  const size_t nr = layout.nr, kr = layout.kr, elem = layout.w16 ? 2 : 1;
  kp_ = round_up(k, layout.k_align);
  if (!weights_fit_layout(w, n, k, w_stride, layout))
    throw std::invalid_argument("weights hold too many -128 values for this layout");
  const size_t fix_bytes = layout.w127 ? kW127FixWords * sizeof(uint32_t) : 0;
  const size_t w_bytes = kp_ * nr * elem;
  panel_stride_ = nr * sizeof(int32_t) + w_bytes + fix_bytes;
  data_ = aligned_zeros(bytes());
  for (size_t n0 = 0; n0 < n; n0 += nr) {
    uint8_t* p = data_.get() + (n0 / nr) * panel_stride_;
    int32_t colsum[64] = {0};  // nr <= 64
    uint8_t* q = p + nr * sizeof(int32_t);
    uint32_t fix[kW127FixWords] = {0};  // w127: count, then (k << 8) | column
    for (size_t j = 0; j < nr && n0 + j < n; ++j) {
      const int8_t* row = w + (n0 + j) * w_stride;
      int32_t s = 0;
      for (size_t kk = 0; kk < k; ++kk) {
        s += row[kk];
        const size_t at = (kk / kr) * nr * kr + j * kr + kk % kr;
        if (elem == 2) {
          const int16_t v = row[kk];
          std::memcpy(q + 2 * at, &v, 2);
        } else if (layout.w127 && row[kk] == -128) {
          q[at] = static_cast<uint8_t>(int8_t{-127});
          fix[++fix[0]] = static_cast<uint32_t>(kk << 8 | j);
        } else {
          q[at] = static_cast<uint8_t>(row[kk]);
        }
      }
      colsum[j] = s;
    }
    std::memcpy(p, colsum, nr * sizeof(int32_t));
    if (layout.w127) std::memcpy(q + w_bytes, fix, sizeof(fix));
  }
}

}  // namespace npq
