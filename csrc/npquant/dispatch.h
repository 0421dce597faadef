// Chooses one immutable kernel set per family, once per process.
// Drivers (ops/) and bindings never branch on an ISA: they use these tables.
#pragma once

#include <string>
#include <vector>

#include "cpu.h"
#include "ukernel.h"

namespace npq {

struct QGemmKernel {
  const char* name;
  Isa isa;
  bool standin;  // same kernel source compiled with another encoding (see docs/dispatch.md)
  uint32_t mr;
  PackedLayout layout;
  qgemm_requant_fn requant;
  qgemm_dequant_fn dequant;
};

struct QuantizeKernel {
  const char* name;
  Isa isa;
  minmax_f32_fn minmax;
  quantize_u8_fn quantize;
};

// Quantized add / add_relu of uint8 codes (see ukernel.h). name == nullptr: none
// for this ISA (QFunctional then uses its lookup tables, ops/elementwise.h).
struct AddKernel {
  const char* name;
  Isa isa;
  qu8_vadd_fn vadd;
};

// Quantized mul of uint8 codes (see ukernel.h); name == nullptr: none (tables).
struct MulKernel {
  const char* name;
  Isa isa;
  qu8_vmul_fn vmul;
};

// Float32 GELU (see ukernel.h); the scalar kernel is always built.
struct GeluKernel {
  const char* name;
  Isa isa;
  f32_vgelu_fn gelu;
};

// 256-entry byte table lookup (see ukernel.h); the scalar kernel is always built.
struct LutKernel {
  const char* name;
  Isa isa;
  u8_lut_fn lut;
};

// Max pooling of u8 codes (see ukernel.h); the scalar kernel is always built.
struct MaxPoolKernel {
  const char* name;
  Isa isa;
  u8_maxpool_fn maxpool;
};

// A float32 kernel of sequence models (see ukernel.h: softmax, LayerNorm, LSTM and GRU
// cells); the scalar kernel of each family is always built.
template <class Fn>
struct FloatKernel {
  const char* name;
  Isa isa;
  Fn fn;
};
using SoftmaxKernel = FloatKernel<f32_vsoftmax_fn>;
using LayerNormKernel = FloatKernel<f32_layernorm_fn>;
using LstmKernel = FloatKernel<f32_vlstm_fn>;
using GruKernel = FloatKernel<f32_vgru_fn>;

// Float32 GEMM tile (see ukernel.h), MR x NR; the scalar one is always built.
struct FGemmKernel {
  const char* name;
  Isa isa;
  uint32_t mr, nr;
  f32_gemm_fn fn;
};

// Indirect GEMM for convolution (see ukernel.h).
struct QIGemmKernel {
  const char* name;  // nullptr: no indirect GEMM for this ISA (conv gathers rows instead)
  Isa isa;
  uint32_t mr;
  PackedLayout layout;
  qigemm_requant_fn requant;
};

// Depthwise convolution: channel tile ct, taps grouped in g; tb and wb bytes per
// channel and tap group in the transformed rows and packed weights (see ukernel.h).
struct DwconvKernel {
  const char* name;
  Isa isa;
  uint32_t ct;
  uint32_t g;
  uint32_t tb;
  uint32_t wb;
  bool vbmi;  // also needs AVX512_VBMI (vpermt2b)
  qu8_dw_pack_fn pack;
  qu8_dw_transform_fn transform;
  qu8_dw_row_fn row;
};

// Exact int8 Winograd F(2x2, 3x3) (see ukernel.h and ops/winograd.h): GEMM tiles of mr
// 2x2-output tiles x nr output channels, channels in groups of kr.
struct WinogradKernel {
  const char* name;  // nullptr: none for this ISA (3x3 convs run the igemm/gather path)
  Isa isa;
  uint32_t mr, nr, kr;
  qu8_wino_input_fn input;
  qu8_wino_gemm_fn gemm;
};

// The kernels a convolution runs on.
struct ConvKernels {
  QGemmKernel gemm;     // 1x1 convolutions, and the gathered path
  QIGemmKernel igemm;   // same ISA as gemm, or none
  QIGemmKernel stem;    // the ISA's last full-range (not w127) igemm, or none: the stem path
  DwconvKernel dwconv;  // stride-1 depthwise convs
  DwconvKernel dwconv_strided;  // stride >= 2: a direct kernel of dwconv's ISA, else dwconv
  WinogradKernel wino;          // same ISA as gemm, or none
};

struct KernelSet {
  Isa cap;                 // the ISA the process runs at (NPQUANT_ISA or the best, after
                           // any self-check fallback)
  QGemmKernel gemm;        // main GEMM; decides the packed weight layout
  QGemmKernel gemm_small;  // for small M; runs on gemm's packed layout
  size_t small_m;          // M below which gemm_small runs
  QuantizeKernel quant;
  // "passed", or which kernel differed from the reference and where the set
  // fell back to (see docs/dispatch.md).
  std::string self_check;
  ConvKernels conv;
  AddKernel add;
  MulKernel mul;
  GeluKernel gelu;
  LutKernel lut;
  MaxPoolKernel maxpool;
  SoftmaxKernel softmax;
  LayerNormKernel layernorm;
  LstmKernel lstm;
  GruKernel gru;
  FGemmKernel fgemm;
};

// The process's kernel set. Throws std::runtime_error (with the fix in the
// message) when NPQUANT_ISA is unknown or unsupported on this CPU/build.
const KernelSet& kernels();

// Every GEMM kernel compiled into this build.
const std::vector<QGemmKernel>& built_gemm_kernels();
// Those this CPU can run (used by the native tests).
std::vector<QGemmKernel> runnable_gemm_kernels();
const std::vector<QuantizeKernel>& built_quantize_kernels();
std::vector<QuantizeKernel> runnable_quantize_kernels();
// ISAs with at least one kernel built.
std::vector<Isa> built_isas();
bool can_run(const QGemmKernel& k);
bool can_run(const QuantizeKernel& k);

// Whether a kernel built for layout `kernel` can run on weights packed with
// layout `packed`: same panel width and K group, and K padded to a multiple
// of what the kernel needs.
bool layout_compatible(const PackedLayout& packed, const PackedLayout& kernel);

// The kernel for layers whose weights do not fit k's layout (layout.w127 and
// more than kW127FixWords - 1 weights of -128 in one panel of NR columns): the
// full-range kernel of k's ISA. k itself when k takes every int8 weight.
const QGemmKernel& gemm_fallback(const QGemmKernel& k);
// The kernel a layer with weights w (N rows of K, row n at w + n*w_stride) is
// packed for and runs on when k is asked for: k, or gemm_fallback(k). Decided
// once per layer, at pack time.
const QGemmKernel& gemm_kernel_for_weights(const QGemmKernel& k, const int8_t* w, size_t n,
                                           size_t kk, size_t w_stride);

// The run-time self-check: runs the kernel once on a small fixed problem (both
// epilogues; weights packed with `layout`) and compares it bit for bit with
// reference/. Returns "" on a match, else a description of the first
// difference. Costs well under a millisecond.
std::string self_check(const QGemmKernel& k, const PackedLayout& layout);
std::string self_check(const QuantizeKernel& k);
const std::vector<QIGemmKernel>& built_igemm_kernels();
const std::vector<DwconvKernel>& built_dwconv_kernels();
bool can_run(const QIGemmKernel& k);
const std::vector<AddKernel>& built_add_kernels();
bool can_run(const AddKernel& k);
const std::vector<MulKernel>& built_mul_kernels();
bool can_run(const MulKernel& k);
const std::vector<GeluKernel>& built_gelu_kernels();
bool can_run(const GeluKernel& k);
const std::vector<LutKernel>& built_lut_kernels();
bool can_run(const LutKernel& k);
const std::vector<MaxPoolKernel>& built_maxpool_kernels();
bool can_run(const MaxPoolKernel& k);
const std::vector<SoftmaxKernel>& built_softmax_kernels();
const std::vector<LayerNormKernel>& built_layernorm_kernels();
const std::vector<LstmKernel>& built_lstm_kernels();
const std::vector<GruKernel>& built_gru_kernels();
const std::vector<FGemmKernel>& built_fgemm_kernels();
bool can_run(const FGemmKernel& k);
template <class Fn>
bool can_run(const FloatKernel<Fn>& k) {
  return cpu_features().supports(k.isa);
}
bool can_run(const DwconvKernel& k);
const std::vector<WinogradKernel>& built_winograd_kernels();
bool can_run(const WinogradKernel& k);
// The conv kernels the process would use if NPQUANT_ISA were `cap` (for tests
// and benchmarks that run every ISA in one process). Throws std::runtime_error
// if no GEMM kernel of that ISA can run here.
ConvKernels conv_kernels_for(Isa cap);

}  // namespace npq
