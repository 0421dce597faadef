// Weight-only quantized embedding lookup + reduce (Embedding / EmbeddingBag).
//
// Tables are row-wise quantized as torch's quint8 / quint4x2 embeddings are: per row r
// a float32 scale s[r] and bias b[r] (b = -s * zero_point, both rounded to float16 for
// 4-bit tables, as torch's 4-bit prepack does), codes q in 0..255 (one byte each) or
// 0..15 (two per byte, element 2j in the low nibble of byte j). A row's value is
//   v[r][j] = fmaf(s[r], q[r][j], b[r])                      (torch's embedding_byte)
// Bags reduce in index order, skipping padding_idx:
//   sum:  acc = fmaf(s', q, fl(acc + b')), s' = fl(s * w), b' = fl(b * w) with a
//         per-sample weight w (s' = s, b' = b without), acc starting at 0 (fbgemm's order);
//   mean: the sum, then fl(acc * fl(1 / count)) for a non-empty bag;
//   max:  the max of v over the bag;
// an empty bag gives zeros. Scalar C++; every index and offset is checked first.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../errors.h"

namespace npq {

enum class BagMode : int { kSum = 0, kMean = 1, kMax = 2 };

struct RowwiseTable {
  const uint8_t* codes;  // rows x row_bytes
  size_t rows, dim, row_bytes;
  int bits;  // 8 or 4
  const float* scale;
  const float* bias;
};

// Throws ValueError (offsets not starting at 0, decreasing, or not ending at n)
// or IndexError (an index outside [0, rows)) before anything reads the table.
void check_bags(size_t rows, const int64_t* indices, size_t n, const int64_t* offsets,
                size_t n_offsets);

// out: bags x dim floats; offsets: bags + 1 entries (checked by check_bags first).
// per_sample_weights: n floats or nullptr (sum only). padding_idx < 0: none.
void embedding_bag_rowwise(const RowwiseTable& t, const int64_t* indices, size_t n,
                           const int64_t* offsets, size_t bags, const float* per_sample_weights,
                           BagMode mode, int64_t padding_idx, float* out);

}  // namespace npq
