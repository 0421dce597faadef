// Microkernel contracts. Every file in ukernels/ defines the functions of its
// registry line (ukernels.inc) with these signatures (namespace npq) and nothing
// else that is visible outside its translation unit: ukernel files are compiled
// with their own ISA flags, so a shared symbol (an out-of-line inline function or
// template instantiation merged by the linker) could run an instruction the CPU
// lacks. Helpers shared between ukernel files live in headers with internal
// linkage only (ukernels/*.h: anonymous namespace, always_inline), so each file
// gets its own copy compiled with its own flags (docs/dispatch.md).
#pragma once

#include <cstddef>
#include <cstdint>

#include "params.h"

namespace npq {

// u8 x s8 GEMM tile, requantized to u8 (static Linear / Conv).
//   mr       rows of A and C in this tile, 1..MR
//   nc       columns of C, >= 1 (the kernel walks ceil(nc/NR) packed panels)
//   kp       K rounded up to the layout's k_align; A rows hold kp readable bytes
//   a        first row of A; row r at a + r*a_stride
//   w        first packed panel (see PackedLayout); panels are consecutive
//   a_zp     mr activation zero points (one per row)
//   c        first output element; row r at c + r*c_stride (bytes)
// acc[m][n] = sum_k a[m][k] * w[n][k] - a_zp[m] * colsum[n]   (exact int32)
typedef void (*qgemm_requant_fn)(size_t mr, size_t nc, size_t kp, const uint8_t* a, size_t a_stride,
                                 const void* w, const int32_t* a_zp, uint8_t* c, size_t c_stride,
                                 const RequantEpilogue* ep);

// Same accumulation, dequantized to fp32 (dynamic Linear). c_stride in bytes.
typedef void (*qgemm_dequant_fn)(size_t mr, size_t nc, size_t kp, const uint8_t* a, size_t a_stride,
                                 const void* w, const int32_t* a_zp, float* c, size_t c_stride,
                                 const DequantEpilogue* ep);

// Indirect GEMM tile (convolution), requantized to u8. Row r of A is the
// concatenation over taps s < ks of kc bytes: at a_base + a[s*MR + r], or at
// `zero` (kc bytes of the input zero point) where a[s*MR + r] == pad (padding).
// The entries are byte offsets, so one indirection table serves any input
// address, batch item and group. MR is the kernel's tile height; kc is a
// multiple of the layout's kr, and w is packed for K = ks*kc (tap-major). The
// kernel computes MR rows and stores mr; the caller fills the entries of rows
// mr..MR-1 with any readable row.
//   acc[m][n] = sum_k a[m][k] * w[n][k] - a_zp * colsum[n]   (exact int32)
typedef void (*qigemm_requant_fn)(size_t mr, size_t nc, size_t kc, size_t ks, const size_t* a,
                                  const uint8_t* a_base, size_t pad, const uint8_t* zero,
                                  const void* w, int32_t a_zp, uint8_t* c, size_t c_stride,
                                  const RequantEpilogue* ep);

// Depthwise convolution (one input channel per output channel), one output row
// at a time, in three parts that share a kernel-private layout:
//  pack       weights w[c][kh][kw] (int8) -> packed blocks of ct channels:
//             int32 wsum per channel, then kh * nq groups of G taps per channel
//             (wb bytes per channel and group: G int8, or G int16).
//             Size: round_up(channels, ct) * (4 + kh * nq * wb) bytes.
//  transform  one input row (channels bytes per pixel) -> its tap groups for every
//             output column: for column ox and group q, the G values of input columns
//             ox*stride - pad_left + (q*G + i)*dil (i < G), in ct-channel blocks
//             (tb bytes per channel and group). Columns outside the row, and taps
//             q*G+i >= kw, read as the zero point xz; x_row == nullptr means the whole
//             row is padding. Size: ow * nq * round_up(channels, ct) * tb bytes.
//  row        out[ox][c] = requant(sum over kh transformed rows and nq groups of the
//             products with the packed weights - xz * wsum[c]), as the GEMM's epilogue
//             (bias_s/mult in natural channel order, padded to a multiple of ct).
typedef void (*qu8_dw_pack_fn)(size_t channels, size_t kh, size_t kw, const int8_t* w,
                               void* packed);
typedef void (*qu8_dw_transform_fn)(const DwRowGeometry* g, const uint8_t* x_row, uint8_t xz,
                                    uint8_t* t);
typedef void (*qu8_dw_row_fn)(size_t channels, size_t ow, size_t kh, size_t nq,
                              const uint8_t* const* t_rows, const void* packed, int32_t xz,
                              uint8_t* y, size_t y_stride, const RequantEpilogue* ep);

// Exact int8 Winograd F(2x2, 3x3) convolution (3x3, stride 1, dilation 1; ops/winograd.h
// derives why it is exact and when). Two parts share the layout of the transformed data:
//  input  one tile of 2x2 outputs: rows[4*i + j] points at the cg input channels of the
//         tile's input pixel (i, j) of its 4x4 patch (a row of cg zero points xz where the
//         pixel is padding or past the input); writes, for the 16 positions p = 4*i + j,
//         V_p = (B^T (x - xz) B)[i][j] as int16 (|V| <= 1020) at v[p*v_pos + c] for
//         c < cp (cp: a multiple of 16, >= cg; channels cg..cp-1 are written as 0).
//  gemm   mr (1..MR) tiles x nc output channels: per tile r and position p, the int32
//         sums M_p[r][n] = sum_{c < kc} v[p*v_pos + r*v_row + c] * U_p[c][n] (wrapping;
//         U = G' g G'^T with G' = 2G, packed by ops/winograd.cc for the kernel's nr and
//         kr: [nc/nr panels][16 positions][kc/kr][nr][kr] int16, kc a multiple of kr),
//         then Y = A^T M A (wrapping), acc = Y >> 2, requantized as the GEMM's epilogue
//         (bias_s/mult from the tile's first column, padded to a multiple of nr), and
//         output pixel q = 2*qy + qx of tile r stored at y[4*r + q] (nc bytes), or
//         skipped where y[4*r + q] is null.
typedef void (*qu8_wino_input_fn)(size_t cg, size_t cp, const uint8_t* const* rows, int32_t xz,
                                  int16_t* v, size_t v_pos);
typedef void (*qu8_wino_gemm_fn)(size_t mr, size_t nc, size_t kc, const int16_t* v, size_t v_row,
                                 size_t v_pos, const void* u, uint8_t* const* y,
                                 const RequantEpilogue* ep);

// Min and max of n floats (n >= 1). Returns false if any value is NaN or
// infinite (min/max are then unspecified).
typedef bool (*minmax_f32_fn)(size_t n, const float* x, float* out_min, float* out_max);

// q[i] = clamp(nearbyint(fmaf(x[i], inv_scale, float(zp))), 0, 255)
typedef void (*quantize_u8_fn)(size_t n, const float* x, float inv_scale, int32_t zp, uint8_t* q);

// Quantized add / add_relu of uint8 codes (QFunctional): with da = fmaf(a_scale,
// a, a_premul), db likewise, v = fl(da + db), v = max(v, 0) if relu:
// y = clamp(nearbyint(fl(v * inv_scale)) + zero_point, 0, 255), the product
// clamped to +-65536 first (NaN to the lower end). a_premul = fl(a_scale * -a_zp).
// b == nullptr: v = da (no b operand): the requantization of a to (1/inv_scale, zero_point).
struct QAddParams {
  float a_scale, a_premul, b_scale, b_premul, inv_scale;
  int32_t zero_point;
  int32_t relu;
};
typedef void (*qu8_vadd_fn)(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                            const QAddParams* p);

// Quantized mul of uint8 codes: y = clamp(nearbyint(fl(float((a - a_zp) * (b - b_zp))
// * multiplier)) + zero_point, 0, 255), the product clamped to +-65536 first (NaN to
// the lower end); multiplier = fl(fl(a_scale * b_scale) * fl(1 / scale)).
struct QMulParams {
  int32_t a_zero_point, b_zero_point;
  float multiplier;
  int32_t zero_point;
};
typedef void (*qu8_vmul_fn)(size_t n, const uint8_t* a, const uint8_t* b, uint8_t* y,
                            const QMulParams* p);

// Float32 GELU of n values (y may equal x): tanh_form 0 is 0.5 x (1 + erf(x / sqrt 2)),
// 1 is 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), both by the rational
// approximations of ukernels/vgelu-coeffs.h; every kernel gives f32_vgelu__scalar's bits.
typedef void (*f32_vgelu_fn)(size_t n, const float* x, float* y, int tanh_form);

// y[i] = table[x[i]] for n bytes, table of 256 entries (y may equal x).
typedef void (*u8_lut_fn)(size_t n, const uint8_t* x, uint8_t* y, const uint8_t* table);

// Max pooling of u8 codes (NHWC): n output pixels of c channels, stored one after another
// from y; pixel i is the bytewise max over the ks rows ind[i*ks .. i*ks + ks), each c bytes
// (a padding tap points at c zero bytes: 0 is the identity of max on u8). ks >= 1.
typedef void (*u8_maxpool_fn)(size_t n, size_t ks, const uint8_t* const* ind, size_t c, uint8_t* y);

// The float32 kernels of sequence models. Each is one IEEE operation after another in
// a fixed order (ukernels/fmath-coeffs.h: exp, sigmoid, tanh; ukernels/scalar-fmath.h:
// the canonical 16-lane sum), so every kernel of a family gives its scalar kernel's
// bits on every ISA.
//
// Softmax of one row of n floats (n >= 1; y may equal x; bias null or n floats):
// v = x (+ bias), m = max(v), e = exp(v - m), s = the canonical sum of e, y = e / s.
// A NaN in v, or a row of -inf, gives a row of NaN (as torch).
typedef void (*f32_vsoftmax_fn)(size_t n, const float* x, const float* bias, float* y);

// LayerNorm of one row of n floats (n >= 1; y may equal x; gamma, beta null or n
// floats), by the corrected two-pass algorithm (S the canonical sum): m0 = S(x) / n,
// d = x - m0, c = S(d) / n, mean = m0 + c, var = max(0, S_fma(d^2) / n - c * c) (the
// squares accumulated with fma), rstd = 1 / sqrt(var + eps),
// y = (x - mean) * rstd (* gamma) (+ beta), one rounding per operation.
typedef void (*f32_layernorm_fn)(size_t n, const float* x, const float* gamma, const float* beta,
                                 float eps, float* y);

// LSTM cell update of n hidden units from the two projections (biases included), torch's
// gate order i, f, g, o (4n floats each): a = gi + gh, i = sigmoid(a_i), f = sigmoid(a_f),
// g = tanh(a_g), o = sigmoid(a_o); c_out = f * c + i * g; h_out = o * tanh(c_out).
// c_out may equal c.
typedef void (*f32_vlstm_fn)(size_t n, const float* gi, const float* gh, const float* c,
                             float* c_out, float* h_out);

// GRU cell update of n hidden units, torch's gate order r, z, n (3n floats each):
// r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z), m = tanh(gh_n * r + gi_n),
// h_out = (h - m) * z + m. h_out may equal h.
typedef void (*f32_vgru_fn)(size_t n, const float* gi, const float* gh, const float* h,
                            float* h_out);

// Float32 GEMM tile: for rows r < mr (1..MR) and columns j < nc (1..NR),
// acc = 0, then acc = fma(a[r][k], b[k][j], acc) for k = 0..kc-1 in order (one fma per
// product), c[r][j] = acc + bias[j] (bias null: acc). So every output is one fma chain,
// whatever the tile: every kernel gives f32_gemm_4x8__scalar's bits. a row r at
// a + r*a_stride, b row k at b + k*b_stride (nc floats read), c row r at c + r*c_stride
// (strides in floats); bias null or nc floats.
typedef void (*f32_gemm_fn)(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                            const float* b, size_t b_stride, const float* bias, float* c,
                            size_t c_stride);

// Selects tokens by a build guard (ukernels.inc): NPQ_IF(NPQ_BUILT_AVX2)(x) is x when
// NPQ_BUILT_AVX2 is defined as 1 (as -DNPQ_BUILT_AVX2 does), else nothing; NPQ_IF(1)(x)
// is x. (The placeholder trick of Linux's IS_ENABLED.)
#define NPQ_IF(guard) NPQ_CAT_(NPQ_IF_, NPQ_IS_ON_(guard))
#define NPQ_IF_1(...) __VA_ARGS__
#define NPQ_IF_0(...)
#define NPQ_CAT_(a, b) NPQ_CAT2_(a, b)
#define NPQ_CAT2_(a, b) a##b
#define NPQ_PLACEHOLDER_1 0,
#define NPQ_IS_ON_(v) NPQ_IS_ON2_(v)
#define NPQ_IS_ON2_(v) NPQ_IS_ON3_(NPQ_PLACEHOLDER_##v)
#define NPQ_IS_ON3_(arg) NPQ_SECOND_(arg 1, 0, ~)
#define NPQ_SECOND_(a, b, ...) b

// Declarations of every registered ukernel (ukernels.inc), built or not.
#define NPQ_QGEMM(name, ...)                                                                       \
  void name##_requant(size_t, size_t, size_t, const uint8_t*, size_t, const void*, const int32_t*, \
                      uint8_t*, size_t, const RequantEpilogue*);                                   \
  void name##_dequant(size_t, size_t, size_t, const uint8_t*, size_t, const void*, const int32_t*, \
                      float*, size_t, const DequantEpilogue*);
#define NPQ_QGEMM_STANDIN NPQ_QGEMM
#define NPQ_QIGEMM(name, ...)                                                                \
  void name##_requant(size_t, size_t, size_t, size_t, const size_t*, const uint8_t*, size_t, \
                      const uint8_t*, const void*, int32_t, uint8_t*, size_t,                \
                      const RequantEpilogue*);
#define NPQ_DWCONV(name, ...)                                                                  \
  void name##_pack(size_t, size_t, size_t, const int8_t*, void*);                              \
  void name##_transform(const DwRowGeometry*, const uint8_t*, uint8_t, uint8_t*);              \
  void name##_row(size_t, size_t, size_t, size_t, const uint8_t* const*, const void*, int32_t, \
                  uint8_t*, size_t, const RequantEpilogue*);
#define NPQ_WINOGRAD(name, ...)                                                         \
  void name##_input(size_t, size_t, const uint8_t* const*, int32_t, int16_t*, size_t);  \
  void name##_gemm(size_t, size_t, size_t, const int16_t*, size_t, size_t, const void*, \
                   uint8_t* const*, const RequantEpilogue*);
#define NPQ_QUANTIZE(name, minmax, ...)                      \
  void name(size_t, const float*, float, int32_t, uint8_t*); \
  bool minmax(size_t, const float*, float*, float*);
#define NPQ_VADD(name, ...) \
  void name(size_t, const uint8_t*, const uint8_t*, uint8_t*, const QAddParams*);
#define NPQ_VMUL(name, ...) \
  void name(size_t, const uint8_t*, const uint8_t*, uint8_t*, const QMulParams*);
#define NPQ_VGELU(name, ...) void name(size_t, const float*, float*, int);
#define NPQ_LUT(name, ...) void name(size_t, const uint8_t*, uint8_t*, const uint8_t*);
#define NPQ_MAXPOOL(name, ...) void name(size_t, size_t, const uint8_t* const*, size_t, uint8_t*);
#define NPQ_VSOFTMAX(name, ...) void name(size_t, const float*, const float*, float*);
#define NPQ_LAYERNORM(name, ...) \
  void name(size_t, const float*, const float*, const float*, float, float*);
#define NPQ_VLSTM(name, ...) \
  void name(size_t, const float*, const float*, const float*, float*, float*);
#define NPQ_VGRU(name, ...) void name(size_t, const float*, const float*, const float*, float*);
#define NPQ_FGEMM(name, ...)                                                                  \
  void name(size_t, size_t, size_t, const float*, size_t, const float*, size_t, const float*, \
            float*, size_t);
#include "ukernels.inc"

}  // namespace npq
