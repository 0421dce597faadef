#include "pack.h"

#include <cstdlib>
#include <cstring>
#include <new>

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

PackedWeights::PackedWeights(const int8_t* w, size_t n, size_t k, size_t w_stride,
                             const PackedLayout& layout)
    : n_(n), k_(k), layout_(layout) {
  const size_t nr = layout.nr, kr = layout.kr, elem = layout.w16 ? 2 : 1;
  kp_ = round_up(k, layout.k_align);
  panel_stride_ = nr * sizeof(int32_t) + kp_ * nr * elem;
  data_ = aligned_zeros(bytes());
  for (size_t n0 = 0; n0 < n; n0 += nr) {
    uint8_t* p = data_.get() + (n0 / nr) * panel_stride_;
    int32_t colsum[64] = {0};  // nr <= 64
    uint8_t* q = p + nr * sizeof(int32_t);
    for (size_t j = 0; j < nr && n0 + j < n; ++j) {
      const int8_t* row = w + (n0 + j) * w_stride;
      int32_t s = 0;
      for (size_t kk = 0; kk < k; ++kk) {
        s += row[kk];
        const size_t at = (kk / kr) * nr * kr + j * kr + kk % kr;
        if (elem == 2) {
          const int16_t v = row[kk];
          std::memcpy(q + 2 * at, &v, 2);
        } else {
          q[at] = static_cast<uint8_t>(row[kk]);
        }
      }
      colsum[j] = s;
    }
    std::memcpy(p, colsum, nr * sizeof(int32_t));
  }
}

}  // namespace npq
