#include "dispatch.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

namespace npq {

namespace {

std::vector<QGemmKernel> make_gemm_table() {
  std::vector<QGemmKernel> t;
  // Ordered from the lowest ISA to the highest.
  t.push_back({"qu8_gemm_2x4c4__scalar", Isa::scalar, false, 2, {4, 4, 4},
               qu8_gemm_2x4c4__scalar_requant, qu8_gemm_2x4c4__scalar_dequant});
#if defined(NPQ_BUILT_AVX2)
  t.push_back({"qu8_gemm_4x8c4__avx2", Isa::avx2, false, 4, {8, 4, 4},
               qu8_gemm_4x8c4__avx2_requant, qu8_gemm_4x8c4__avx2_dequant});
#endif
#if defined(NPQ_BUILT_AVXVNNI_EVEX)
  t.push_back({"qu8_gemm_4x16c4__avxvnni_evex", Isa::avxvnni, true, 4, {16, 4, 4},
               qu8_gemm_4x16c4__avxvnni_evex_requant, qu8_gemm_4x16c4__avxvnni_evex_dequant});
#endif
#if defined(NPQ_BUILT_AVXVNNI)
  t.push_back({"qu8_gemm_4x16c4__avxvnni", Isa::avxvnni, false, 4, {16, 4, 4},
               qu8_gemm_4x16c4__avxvnni_requant, qu8_gemm_4x16c4__avxvnni_dequant});
#endif
#if defined(NPQ_BUILT_AVX512VNNI)
  t.push_back({"qu8_gemm_8x32c4__avx512vnni", Isa::avx512vnni, false, 8, {16, 4, 4},
               qu8_gemm_8x32c4__avx512vnni_requant, qu8_gemm_8x32c4__avx512vnni_dequant});
#endif
#if defined(NPQ_BUILT_AMX)
  t.push_back({"qu8_gemm_32x32c4__amx", Isa::amx, false, 32, {16, 4, 64},
               qu8_gemm_32x32c4__amx_requant, qu8_gemm_32x32c4__amx_dequant});
#endif
#if defined(NPQ_BUILT_NEON)
  t.push_back({"qu8_gemm_4x4c8__neon", Isa::neon, false, 4, {4, 8, 8},
               qu8_gemm_4x4c8__neon_requant, qu8_gemm_4x4c8__neon_dequant});
#endif
#if defined(NPQ_BUILT_NEONDOT)
  t.push_back({"qu8_gemm_4x16c4__neondot", Isa::neondot, false, 4, {16, 4, 4},
               qu8_gemm_4x16c4__neondot_requant, qu8_gemm_4x16c4__neondot_dequant});
#endif
#if defined(NPQ_BUILT_NEONI8MM)
  t.push_back({"qu8_gemm_4x16c8__neoni8mm", Isa::neoni8mm, false, 4, {16, 8, 8},
               qu8_gemm_4x16c8__neoni8mm_requant, qu8_gemm_4x16c8__neoni8mm_dequant});
#endif
  return t;
}

std::vector<QuantizeKernel> make_quantize_table() {
  std::vector<QuantizeKernel> t;
  t.push_back({"f32_qu8_quantize__scalar", Isa::scalar, f32_minmax__scalar,
               f32_qu8_quantize__scalar});
#if defined(NPQ_BUILT_AVX2)
  t.push_back({"f32_qu8_quantize__avx2", Isa::avx2, f32_minmax__avx2, f32_qu8_quantize__avx2});
#endif
#if defined(NPQ_BUILT_AVX512VNNI)
  t.push_back({"f32_qu8_quantize__avx512vnni", Isa::avx512vnni, f32_minmax__avx512vnni,
               f32_qu8_quantize__avx512vnni});
#endif
#if defined(NPQ_BUILT_NEON)
  t.push_back({"f32_qu8_quantize__neon", Isa::neon, f32_minmax__neon, f32_qu8_quantize__neon});
#endif
  return t;
}

std::string join_isas(const std::vector<Isa>& v) {
  std::string s;
  for (Isa i : v) {
    if (!s.empty()) s += ", ";
    s += isa_name(i);
  }
  return s;
}

// The best kernel of table t whose ISA is <= cap and that can run here.
// A stand-in is only used when the cap names its ISA exactly and the real
// encoding cannot run.
template <class K>
const K* pick(const std::vector<K>& t, Isa cap) {
  const K* best = nullptr;
  for (const K& k : t) {
    if (static_cast<int>(k.isa) > static_cast<int>(cap) || !can_run(k)) continue;
    if (!best || static_cast<int>(k.isa) > static_cast<int>(best->isa)) best = &k;
  }
  return best;
}

KernelSet choose() {
  const CpuFeatures& cpu = cpu_features();
  std::vector<Isa> runnable;  // built and supported here (stand-ins count)
  for (Isa i : built_isas()) {
    for (const QGemmKernel& k : built_gemm_kernels())
      if (k.isa == i && can_run(k)) {
        runnable.push_back(i);
        break;
      }
  }
  Isa cap = runnable.back();
  const char* env = std::getenv("NPQUANT_ISA");
  if (env && *env) {
    Isa want;
    if (!parse_isa(env, &want))
      throw std::runtime_error(std::string("NPQUANT_ISA='") + env +
                               "' is not an ISA name. Use one of: scalar, avx2, avxvnni, "
                               "avx512vnni, amx, neon, neondot, neoni8mm (runnable here: " +
                               join_isas(runnable) + "), or unset it.");
    if (std::find(runnable.begin(), runnable.end(), want) == runnable.end()) {
      const auto built = built_isas();
      const bool is_built = std::find(built.begin(), built.end(), want) != built.end();
      throw std::runtime_error(
          std::string("NPQUANT_ISA=") + env + " cannot run here: " +
          (is_built ? "this CPU (" + cpu.arch + ") or its OS lacks it"
                    : std::string("this build of npquant has no kernels for it")) +
          ". ISAs runnable here: " + join_isas(runnable) +
          ". Set NPQUANT_ISA to one of them, or unset it.");
    }
    cap = want;
  }
  KernelSet s{};
  s.cap = cap;
  // Stand-ins only stand in when the real encoding is missing.
  const QGemmKernel* g = nullptr;
  for (const QGemmKernel& k : built_gemm_kernels()) {
    if (k.isa != cap || !can_run(k)) continue;
    if (!g || (g->standin && !k.standin)) g = &k;
  }
  s.gemm = *g;
  s.gemm_small = *g;
  s.small_m = 0;
  if (cap == Isa::amx) {
    // AMX tiles are 16 rows high; small M runs on AVX-512 VNNI with the same layout.
    for (const QGemmKernel& k : built_gemm_kernels())
      if (k.isa == Isa::avx512vnni && can_run(k)) {
        s.gemm_small = k;
        s.small_m = 16;
      }
  }
  const QuantizeKernel* q = pick(built_quantize_kernels(), cap);
  s.quant = *q;
  return s;
}

}  // namespace

bool can_run(const QGemmKernel& k) {
  const CpuFeatures& cpu = cpu_features();
  if (k.standin) return cpu.supports(Isa::avx512vnni);
  return cpu.supports(k.isa);
}

bool can_run(const QuantizeKernel& k) { return cpu_features().supports(k.isa); }

const std::vector<QGemmKernel>& built_gemm_kernels() {
  static const std::vector<QGemmKernel> t = make_gemm_table();
  return t;
}

const std::vector<QuantizeKernel>& built_quantize_kernels() {
  static const std::vector<QuantizeKernel> t = make_quantize_table();
  return t;
}

std::vector<QGemmKernel> runnable_gemm_kernels() {
  std::vector<QGemmKernel> v;
  for (const auto& k : built_gemm_kernels())
    if (can_run(k)) v.push_back(k);
  return v;
}

std::vector<QuantizeKernel> runnable_quantize_kernels() {
  std::vector<QuantizeKernel> v;
  for (const auto& k : built_quantize_kernels())
    if (can_run(k)) v.push_back(k);
  return v;
}

std::vector<Isa> built_isas() {
  std::vector<Isa> v;
  for (const auto& k : built_gemm_kernels())
    if (std::find(v.begin(), v.end(), k.isa) == v.end()) v.push_back(k.isa);
  return v;
}

const KernelSet& kernels() {
  static const KernelSet s = choose();
  return s;
}

}  // namespace npq
