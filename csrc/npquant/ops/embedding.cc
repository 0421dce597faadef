// Row-wise quantized embedding lookup + reduce; numerics in embedding.h.
#include "embedding.h"

#include <cmath>
#include <string>

#include "../errors.h"

namespace npq {

void check_bags(size_t rows, const int64_t* indices, size_t n, const int64_t* offsets,
                size_t n_offsets) {
  if (n_offsets == 0) throw ValueError("offsets must have at least one entry");
  if (offsets[0] != 0)
    throw ValueError("offsets must start at 0, got " + std::to_string(offsets[0]));
  for (size_t b = 1; b < n_offsets; ++b)
    if (offsets[b] < offsets[b - 1])
      throw ValueError("offsets must not decrease, got " + std::to_string(offsets[b - 1]) +
                       " then " + std::to_string(offsets[b]));
  if (offsets[n_offsets - 1] != static_cast<int64_t>(n))
    throw ValueError("the last offset must be the number of indices, " + std::to_string(n) +
                     ", got " + std::to_string(offsets[n_offsets - 1]));
  for (size_t i = 0; i < n; ++i)
    if (indices[i] < 0 || static_cast<uint64_t>(indices[i]) >= rows)
      throw IndexError("index " + std::to_string(indices[i]) + " is out of range for " +
                       std::to_string(rows) + " embeddings");
}

namespace {

inline float code(const uint8_t* row, size_t j, int bits) {
  if (bits == 8) return static_cast<float>(row[j]);
  const uint8_t byte = row[j >> 1];
  return static_cast<float>((j & 1) ? (byte >> 4) : (byte & 15));
}

void sum_bag(const RowwiseTable& t, const int64_t* idx, size_t count, const float* w, int64_t pad,
             float* acc, size_t* used) {
  for (size_t i = 0; i < count; ++i) {
    if (idx[i] == pad) continue;
    ++*used;
    const size_t r = static_cast<size_t>(idx[i]);
    const uint8_t* row = t.codes + r * t.row_bytes;
    float s = t.scale[r], b = t.bias[r];
    if (w != nullptr) {
      s = s * w[i];
      b = b * w[i];
    }
    for (size_t j = 0; j < t.dim; ++j) acc[j] = std::fmaf(s, code(row, j, t.bits), acc[j] + b);
  }
}

void max_bag(const RowwiseTable& t, const int64_t* idx, size_t count, int64_t pad, float* acc) {
  bool first = true;
  for (size_t i = 0; i < count; ++i) {
    if (idx[i] == pad) continue;
    const size_t r = static_cast<size_t>(idx[i]);
    const uint8_t* row = t.codes + r * t.row_bytes;
    for (size_t j = 0; j < t.dim; ++j) {
      const float v = std::fmaf(t.scale[r], code(row, j, t.bits), t.bias[r]);
      acc[j] = first ? v : std::fmax(acc[j], v);
    }
    first = false;
  }
}

}  // namespace

void embedding_bag_rowwise(const RowwiseTable& t, const int64_t* indices, size_t n,
                           const int64_t* offsets, size_t bags, const float* per_sample_weights,
                           BagMode mode, int64_t padding_idx, float* out) {
  (void)n;
  for (size_t b = 0; b < bags; ++b) {
    float* acc = out + b * t.dim;
    for (size_t j = 0; j < t.dim; ++j) acc[j] = 0.0f;
    const int64_t* idx = indices + offsets[b];
    const size_t count = static_cast<size_t>(offsets[b + 1] - offsets[b]);
    const float* w = per_sample_weights == nullptr ? nullptr : per_sample_weights + offsets[b];
    if (mode == BagMode::kMax) {
      max_bag(t, idx, count, padding_idx, acc);
      continue;
    }
    size_t used = 0;
    sum_bag(t, idx, count, w, padding_idx, acc, &used);
    if (mode == BagMode::kMean && used > 0) {
      const float inv = 1.0f / static_cast<float>(used);
      for (size_t j = 0; j < t.dim; ++j) acc[j] = acc[j] * inv;
    }
  }
}

}  // namespace npq
