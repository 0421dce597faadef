// Quantized Conv2d driver: NHWC u8 in, NHWC u8 out, per-channel requantization.
//
// The paths, chosen once when the weights are packed (never by ISA):
//  gemm    1x1, stride 1, no padding, one group: the activation matrix is the
//          input itself (M = N*H*W rows of C bytes), so the GEMM runs directly.
//  igemm   other shapes, when the ISA has an indirect-GEMM kernel and C/groups is
//          a multiple of its kr: the kernel reads A through an indirection buffer
//          of row pointers (one per output pixel and tap; padding points at a row
//          of zero points), so no activation bytes are copied. The buffer holds
//          offsets from the input's start, so it is built once per input size and
//          kept with the weights (up to kMaxIndirectionBytes; larger ones are
//          built strip by strip on every call).
//  gather  other shapes otherwise: the same indirection buffer, but the taps of a
//          strip of output pixels are copied into a small buffer (64 rows, L1/L2
//          sized) that the ordinary GEMM kernel reads. Memory stays O(strip).
//  stem    few input channels (C/groups not a multiple of the stem kernel's kr, one
//          group, no horizontal dilation; a 3-channel first layer), on the ISA's
//          full-range indirect GEMM (ConvKernels::stem): the input is
//          copied once per call into a canvas with the padding built in, where the
//          kw taps of a kernel row are kw*C adjacent bytes; the indirect-GEMM kernel
//          then reads one row pointer per kernel row, kw*C bytes rounded up to its kr
//          (the extra bytes meet zero weights). No tap copies, no padding checks.
//  dwconv  depthwise (one input channel per group): dedicated kernels that turn
//          each input row into groups of G taps once and reuse it for every output
//          row that reads it.
//  winograd  3x3, stride 1, dilation 1, one group, when the ISA has a Winograd
//          kernel, the weights keep it exact (winograd.h) and the layer is one it
//          was measured faster on (winograd_pays): exact int8 F(2x2, 3x3), 16
//          int16 multiplies per 2x2 outputs and channel instead of 36.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "../dispatch.h"
#include "../errors.h"
#include "pack.h"
#include "winograd.h"

namespace npq {

// Checks a geometry (sizes >= 1, groups dividing both channel counts, the
// reduction length within kMaxK). Throws ValueError with the fix.
void check_conv_geometry(const ConvGeometry& g);

// Output size along one dimension; throws ValueError when the dilated kernel
// is larger than the padded input. `dim` names the dimension in the message.
size_t conv_out_size(size_t in, size_t k, size_t stride, size_t dil, size_t pad0, size_t pad1,
                     const char* dim);

// When the Winograd path runs (where the ISA has a Winograd kernel): on the layers it
// was measured faster on (winograd_pays), on every layer where it is exact and the
// geometry fits (for tests), or never.
enum class WinogradUse { when_faster, when_exact, never };

// Whether a layer of this geometry (3x3, stride 1, ...) runs faster on the Winograd
// path than on the indirect GEMM: enough channels that the transforms are a small
// share of the work (measured on the AVX2 kernels; docs/conv.md).
bool winograd_pays(const ConvGeometry& g);

// Conv weights packed for one set of kernels. Immutable; safe to share between threads.
class PackedConv2d {
 public:
  enum class Path { gemm, igemm, gather, dwconv, winograd, stem };

  // w: OIHW int8 weights (out_c, in_c/groups, kh, kw), C-contiguous.
  // use_igemm = false forces the gather path where igemm would run (for tests);
  // wino says when the Winograd path takes a layer it can compute exactly.
  PackedConv2d(const int8_t* w, const ConvGeometry& g, const ConvKernels& k, bool use_igemm = true,
               WinogradUse wino = WinogradUse::when_faster);

  const ConvGeometry& geometry() const { return g_; }
  const ConvKernels& kernels() const { return k_; }
  Path path() const { return path_; }
  const char* path_name() const;
  // The kernel doing the arithmetic on this path.
  const char* kernel_name() const;
  size_t bytes() const;

  // Row offsets of one input size (see ConvRunner::build_indirection).
  struct Indirection {
    size_t h, w;
    std::vector<size_t> entries;
  };

 private:
  friend struct ConvRunner;
  mutable std::mutex ind_mu_;
  mutable std::shared_ptr<const Indirection> ind_;  // the last input size's table
  ConvGeometry g_;
  ConvKernels k_;
  Path path_;
  std::vector<PackedWeights> grp_;  // one per group (gemm/igemm/gather/stem)
  size_t stem_kc_ = 0;              // stem: bytes per kernel row, kw*C rounded up to kr
  AlignedBuffer dw_;                // dwconv
  size_t dw_bytes_ = 0;
  WinogradWeights wino_;  // winograd
};

struct Conv2dArgs {
  size_t batch, h, w;  // input NHWC: batch x h x w x in_c
  const uint8_t* x;
  float xs;
  int32_t xz;
  const float* w_scale;  // out_c values
  const float* bias;     // out_c values or null
  float ys;
  int32_t yz;
  int32_t out_min;  // 0, or yz for fused ReLU
  int32_t out_max;  // 255
  uint8_t* y;       // NHWC: batch x out_h x out_w x out_c
  // The input is NCHW (batch x in_c x h x w) instead: the stem path reads it while
  // building its canvas (no separate transpose); other paths transpose it first.
  bool nchw = false;
};

// y = requant(conv(x - xz, w)) per output channel, the numerics of the static GEMM.
// Throws ValueError for an input the geometry does not fit.
void conv2d_static(const PackedConv2d& w, const Conv2dArgs& a);

}  // namespace npq
