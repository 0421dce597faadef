#include "elementwise.h"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#endif

#include "../dispatch.h"
#include "threadpool.h"

namespace npq {

namespace {

// Below this many output bytes one thread does the whole op (a parallel
// region costs a few microseconds; a lookup about 0.4 ns per byte).
constexpr size_t kParallelMin = size_t{1} << 18;
constexpr size_t kChunk = size_t{1} << 16;

// Calls body(begin, end) over [0, n) in chunks of about `chunk` units, in
// parallel when the op moves at least kParallelMin bytes.
template <class Body>
void for_chunks(size_t n, size_t chunk, size_t bytes, const Body& body) {
  if (bytes < kParallelMin || get_num_threads() == 1 || n <= chunk) {
    body(size_t{0}, n);
    return;
  }
  const size_t tasks = (n + chunk - 1) / chunk;
  parallel_for(tasks, [&](size_t t) { body(t * chunk, std::min(n, (t + 1) * chunk)); });
}

// The dispatched table-lookup kernel (ukernels/u8-lut-*.cc).
inline void lookup_run(const uint8_t* x, uint8_t* y, size_t n, const uint8_t* table) {
  kernels().lut.lut(n, x, y, table);
}

inline void lookup2_run(const uint8_t* __restrict__ a, const uint8_t* __restrict__ b,
                        uint8_t* __restrict__ y, size_t n, const uint8_t* __restrict__ table) {
  for (size_t i = 0; i < n; ++i) y[i] = table[static_cast<size_t>(a[i]) << 8 | b[i]];
}

// y[i] = table[a[i] << 8 | b[i]] along a row of channels (b per channel).
inline void lookup2_row(const uint8_t* __restrict__ a, const uint8_t* __restrict__ b,
                        uint8_t* __restrict__ y, size_t c, const uint8_t* __restrict__ table) {
  lookup2_run(a, b, y, c, table);
}

// y[i] = table[a[i] << 8 | bb]: one b code for a whole run (a column of the table).
inline void lookup2_column(const uint8_t* __restrict__ a, uint8_t* __restrict__ y, size_t n,
                           const uint8_t* __restrict__ column) {
  for (size_t i = 0; i < n; ++i) y[i] = column[static_cast<size_t>(a[i]) << 8];
}

}  // namespace

void lookup_u8(const uint8_t* x, uint8_t* y, size_t n, const uint8_t* table) {
  for_chunks(n, kChunk, 2 * n,
             [&](size_t i0, size_t i1) { lookup_run(x + i0, y + i0, i1 - i0, table); });
}

// 16 bytes per step with SSE2 / NEON, which every target has (ukernels/ needs no
// dispatch for an op this memory-bound); the byte loop does the tail.
void clamp_u8(const uint8_t* x, uint8_t* y, size_t n, uint8_t lo, uint8_t hi) {
  for_chunks(n, kChunk, 2 * n, [&](size_t i0, size_t i1) {
    size_t i = i0;
#if defined(__SSE2__)
    const __m128i vlo = _mm_set1_epi8(static_cast<char>(lo)),
                  vhi = _mm_set1_epi8(static_cast<char>(hi));
    for (; i + 16 <= i1; i += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm_min_epu8(_mm_max_epu8(v, vlo), vhi));
    }
#elif defined(__ARM_NEON)
    const uint8x16_t vlo = vdupq_n_u8(lo), vhi = vdupq_n_u8(hi);
    for (; i + 16 <= i1; i += 16) vst1q_u8(y + i, vminq_u8(vmaxq_u8(vld1q_u8(x + i), vlo), vhi));
#endif
    for (; i < i1; ++i) y[i] = std::min(std::max(x[i], lo), hi);
  });
}

void lookup2_u8(const uint8_t* a, const uint8_t* b, uint8_t* y, size_t n, const uint8_t* table) {
  for_chunks(n, kChunk, 3 * n,
             [&](size_t i0, size_t i1) { lookup2_run(a + i0, b + i0, y + i0, i1 - i0, table); });
}

void lookup2_channel_u8(const uint8_t* a, const uint8_t* b, uint8_t* y, size_t batch,
                        size_t spatial, size_t channels, bool channels_last, const uint8_t* table) {
  const size_t n = batch * spatial * channels;
  if (n == 0) return;
  if (channels_last) {
    // rows of `channels` codes; row r belongs to batch r / spatial
    const size_t rows = batch * spatial;
    const size_t chunk = std::max<size_t>(1, kChunk / channels);
    for_chunks(rows, chunk, 2 * n, [&](size_t r0, size_t r1) {
      for (size_t r = r0; r < r1; ++r)
        lookup2_row(a + r * channels, b + (r / spatial) * channels, y + r * channels, channels,
                    table);
    });
  } else {
    // runs of `spatial` codes, one b code per run
    const size_t runs = batch * channels;
    const size_t chunk = std::max<size_t>(1, kChunk / spatial);
    for_chunks(runs, chunk, 2 * n, [&](size_t r0, size_t r1) {
      for (size_t r = r0; r < r1; ++r)
        lookup2_column(a + r * spatial, y + r * spatial, spatial, table + b[r]);
    });
  }
}

QAddParams qadd_params(float a_scale, int32_t a_zp, float b_scale, int32_t b_zp, float scale,
                       int32_t zp, bool relu) {
  return QAddParams{a_scale,      a_scale * static_cast<float>(-a_zp),
                    b_scale,      b_scale * static_cast<float>(-b_zp),
                    1.0f / scale, zp,
                    relu ? 1 : 0};
}

QAddParams requant_params(float a_scale, int32_t a_zp, float scale, int32_t zp) {
  return QAddParams{a_scale, a_scale * static_cast<float>(-a_zp), 0.0f, 0.0f, 1.0f / scale, zp, 0};
}

QMulParams qmul_params(float a_scale, int32_t a_zp, float b_scale, int32_t b_zp, float scale,
                       int32_t zp) {
  return QMulParams{a_zp, b_zp, (a_scale * b_scale) * (1.0f / scale), zp};
}

void qadd_u8(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y, const QAddParams& p) {
  const qu8_vadd_fn vadd = kernels().add.vadd;
  for_chunks(n, kChunk, 3 * n,
             [&](size_t i0, size_t i1) { vadd(i1 - i0, a + i0, b + i0, y + i0, &p); });
}

void qmul_u8(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y, const QMulParams& p) {
  const qu8_vmul_fn vmul = kernels().mul.vmul;
  for_chunks(n, kChunk, 3 * n,
             [&](size_t i0, size_t i1) { vmul(i1 - i0, a + i0, b + i0, y + i0, &p); });
}

void qmul_channel_u8(size_t batch, size_t spatial, size_t channels, const uint8_t* a,
                     const uint8_t* b, uint8_t* y, const QMulParams& p) {
  const qu8_vmul_fn vmul = kernels().mul.vmul;
  const size_t rows = batch * spatial, n = rows * channels;
  if (n == 0) return;
  const size_t chunk = std::max<size_t>(1, kChunk / channels);
  for_chunks(rows, chunk, 2 * n, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r)
      vmul(channels, a + r * channels, b + (r / spatial) * channels, y + r * channels, &p);
  });
}

void gelu_f32(size_t n, const float* x, float* y, bool tanh_form) {
  const f32_vgelu_fn gelu = kernels().gelu.gelu;
  // About 0.35 ns per float (AVX-512, Zen 4; AVX2 about twice): parallel from 4,096
  // floats (bytes counted as 64 per float), in chunks of 16,384.
  for_chunks(n, kChunk / 4, 64 * n,
             [&](size_t i0, size_t i1) { gelu(i1 - i0, x + i0, y + i0, tanh_form ? 1 : 0); });
}

void cat_rows_u8(const CatPart* parts, size_t nparts, size_t rows, uint8_t* y) {
  size_t width = 0;
  for (size_t i = 0; i < nparts; ++i) width += parts[i].channels;
  if (rows == 0 || width == 0) return;
  const size_t chunk = std::max<size_t>(1, kChunk / width);
  const qu8_vadd_fn vadd = kernels().add.vadd;
  for_chunks(rows, chunk, 2 * rows * width, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      uint8_t* out = y + r * width;
      for (size_t i = 0; i < nparts; ++i) {
        const CatPart& p = parts[i];
        const uint8_t* in = p.x + r * p.channels;
        if (p.table != nullptr)
          lookup_run(in, out, p.channels, p.table);
        else if (p.requant != nullptr)
          vadd(p.channels, in, nullptr, out, p.requant);
        else
          std::memcpy(out, in, p.channels);
        out += p.channels;
      }
    }
  });
}

namespace {

// out[2j] = a[j], out[2j + 1] = b[j] for j < n. Written with SSE2 unpacks: the
// compiler does not vectorize the byte loop (out may alias a and b), which ran
// at 0.6-2 GB/s, a tenth of a copy.
void interleave2(const uint8_t* a, const uint8_t* b, uint8_t* out, size_t n) {
  size_t j = 0;
#if defined(__SSE2__)
  for (; j + 16 <= n; j += 16) {
    const __m128i va = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + j));
    const __m128i vb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + j));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * j), _mm_unpacklo_epi8(va, vb));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * j + 16), _mm_unpackhi_epi8(va, vb));
  }
#endif
  for (; j < n; ++j) {
    out[2 * j] = a[j];
    out[2 * j + 1] = b[j];
  }
}

}  // namespace

void channel_shuffle_u8(const uint8_t* x, uint8_t* y, size_t rows, size_t groups,
                        size_t per_group) {
  const size_t width = groups * per_group;
  if (rows == 0 || width == 0) return;
  const size_t chunk = std::max<size_t>(1, kChunk / width);
  for_chunks(rows, chunk, 2 * rows * width, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const uint8_t* in = x + r * width;
      uint8_t* out = y + r * width;
      if (groups == 2) {  // ShuffleNet's case: interleave the two halves
        interleave2(in, in + per_group, out, per_group);
        continue;
      }
      for (size_t g = 0; g < groups; ++g)
        for (size_t j = 0; j < per_group; ++j) out[j * groups + g] = in[g * per_group + j];
    }
  });
}

namespace {

// One image's (channels, pixels) plane block -> (pixels, channels) rows, for
// pixels [p0, p1) and channels [c0, c1): the portable form.
void transpose_block(const uint8_t* in, uint8_t* out, size_t channels, size_t pixels, size_t p0,
                     size_t p1, size_t c0, size_t c1) {
  for (size_t c = c0; c < c1; ++c) {
    const uint8_t* src = in + c * pixels;
    for (size_t p = p0; p < p1; ++p) out[p * channels + c] = src[p];
  }
}

#if defined(__SSE2__)
// A 16 x 16 byte tile: 16 channels' runs of 16 pixels -> 16 pixels' runs of 16
// channels, by four rounds of unpacking (SSE2, part of every x86-64 baseline).
void transpose16(const uint8_t* in, size_t in_stride, uint8_t* out, size_t out_stride) {
  __m128i r[16], t[16];
  for (int i = 0; i < 16; ++i)
    r[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i * in_stride));
  for (int i = 0; i < 8; ++i) {  // bytes
    t[i] = _mm_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
    t[i + 8] = _mm_unpackhi_epi8(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // 16-bit pairs
    r[i] = _mm_unpacklo_epi16(t[2 * i], t[2 * i + 1]);
    r[i + 4] = _mm_unpackhi_epi16(t[2 * i], t[2 * i + 1]);
    r[i + 8] = _mm_unpacklo_epi16(t[2 * i + 8], t[2 * i + 9]);
    r[i + 12] = _mm_unpackhi_epi16(t[2 * i + 8], t[2 * i + 9]);
  }
  for (int i = 0; i < 8; ++i) {  // 32-bit quads
    t[2 * i] = _mm_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // t[4a + b] holds pixels 4a + 2b and 4a + 2b + 1 of channels 0-7, t[4a + b + 2]
  // the same pixels' channels 8-15 (a = 0..3, b = 0, 1): a last 64-bit round
  // joins the two halves of each pixel.
  for (int j = 0; j < 8; ++j) {
    const int lo = (j / 2) * 4 + j % 2;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (2 * j) * out_stride),
                     _mm_unpacklo_epi64(t[lo], t[lo + 2]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (2 * j + 1) * out_stride),
                     _mm_unpackhi_epi64(t[lo], t[lo + 2]));
  }
}
#endif

}  // namespace

void nhwc_to_nchw_u8(const uint8_t* x, uint8_t* y, size_t batch, size_t pixels, size_t channels) {
  // Small in the models that need it (a Flatten's input): one plain loop per image.
  for (size_t n = 0; n < batch; ++n) {
    const uint8_t* in = x + n * pixels * channels;
    uint8_t* out = y + n * pixels * channels;
    for (size_t c = 0; c < channels; ++c)
      for (size_t p = 0; p < pixels; ++p) out[c * pixels + p] = in[p * channels + c];
  }
}

void channel_range_u8(const uint8_t* x, uint8_t* y, size_t rows, size_t channels, size_t start,
                      size_t count) {
  if (rows == 0 || count == 0) return;
  const size_t per_chunk = std::max<size_t>(1, kChunk / channels);
  for_chunks(rows, per_chunk, rows * count, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) std::memcpy(y + r * count, x + r * channels + start, count);
  });
}

void nchw_to_nhwc_u8(const uint8_t* x, uint8_t* y, size_t batch, size_t channels, size_t pixels) {
  // Blocks of kBlock pixels x all channels; within a block, 16 x 16 tiles where
  // the SIMD transpose applies, the portable loop elsewhere.
  constexpr size_t kBlock = 64;
  if (batch == 0 || channels == 0 || pixels == 0) return;
  const size_t blocks = (pixels + kBlock - 1) / kBlock;
  const size_t per_chunk = std::max<size_t>(1, kChunk / (kBlock * channels));
  for_chunks(batch * blocks, per_chunk, batch * pixels * channels, [&](size_t b0, size_t b1) {
    for (size_t b = b0; b < b1; ++b) {
      const size_t n = b / blocks, p0 = (b % blocks) * kBlock;
      const size_t p1 = std::min(pixels, p0 + kBlock);
      const uint8_t* in = x + n * channels * pixels;
      uint8_t* out = y + n * channels * pixels;
      size_t c16 = 0, p16 = p0;
#if defined(__SSE2__)
      c16 = channels / 16 * 16;
      p16 = p0 + (p1 - p0) / 16 * 16;
      for (size_t c = 0; c < c16; c += 16)
        for (size_t p = p0; p < p16; p += 16)
          transpose16(in + c * pixels + p, pixels, out + p * channels + c, channels);
      transpose_block(in, out, channels, pixels, p16, p1, 0, c16);  // pixel tail
#endif
      transpose_block(in, out, channels, pixels, p0, p1, c16, channels);  // channel tail
      (void)p16;
    }
  });
}

}  // namespace npq
