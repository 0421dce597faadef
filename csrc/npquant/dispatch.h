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

struct KernelSet {
  Isa cap;                 // the ISA the process runs at (NPQUANT_ISA or the best)
  QGemmKernel gemm;        // main GEMM; decides the packed weight layout
  QGemmKernel gemm_small;  // for small M; same packed layout as gemm
  size_t small_m;          // M below which gemm_small runs
  QuantizeKernel quant;
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

}  // namespace npq
