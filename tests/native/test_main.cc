// npquant native tests: every runnable ukernel and the Linear/Conv drivers
// against the reference, bit for bit. Prints how many checks passed per label
// (kernel) and per ISA, and exits non-zero on any failure, or when a runnable
// kernel of the registry (ukernels.inc, through the dispatch tables) got no
// passing check: a registered kernel is tested without a test of its own.
//
// Usage: npq_native_tests [--expect-isa ISA] [--quick]
//   --expect-isa  fail unless dispatch chose ISA (checks the CPU feature detection;
//                 tests/arm/run_qemu.sh runs one per qemu CPU model)
//   --quick       shorter K grid (GEMM edge grid up to k = 257, not 4096)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "harness.h"
#include "npquant/cpu.h"
#include "npquant/dispatch.h"

namespace npqtest {
void test_gemm_kernels(Tally& t);
void test_quantize_kernels(Tally& t);
void test_elementwise_kernels(Tally& t);
void test_linear_drivers(Tally& t);
void test_packed_linear(Tally& t);
void test_dispatch(Tally& t);
void test_conv(Tally& t);
void test_float_kernels(Tally& t);

namespace {
Options g_options;
}  // namespace
const Options& options() { return g_options; }

namespace {

struct Registered {
  std::string name;
  npq::Isa isa;
  bool built, runnable;
};

template <class K>
void add_table(const std::vector<K>& table, std::vector<Registered>* out) {
  for (const K& k : table) out->push_back({k.name, k.isa, true, npq::can_run(k)});
}

// Every kernel of the registry, whether built here and runnable on this CPU.
std::vector<Registered> registry() {
  std::vector<Registered> v;
  add_table(npq::built_gemm_kernels(), &v);
  add_table(npq::built_igemm_kernels(), &v);
  add_table(npq::built_dwconv_kernels(), &v);
  add_table(npq::built_winograd_kernels(), &v);
  add_table(npq::built_quantize_kernels(), &v);
  add_table(npq::built_add_kernels(), &v);
  add_table(npq::built_mul_kernels(), &v);
  add_table(npq::built_lut_kernels(), &v);
  add_table(npq::built_maxpool_kernels(), &v);
  add_table(npq::built_gelu_kernels(), &v);
  add_table(npq::built_softmax_kernels(), &v);
  add_table(npq::built_layernorm_kernels(), &v);
  add_table(npq::built_lstm_kernels(), &v);
  add_table(npq::built_gru_kernels(), &v);
  add_table(npq::built_fgemm_kernels(), &v);
  auto known = [&](const char* name) {
    return std::any_of(v.begin(), v.end(), [&](const Registered& r) { return r.name == name; });
  };
  std::vector<Registered> not_built;
#define NPQ_ROW_(name, isa) \
  if (!known(#name)) not_built.push_back({#name, npq::Isa::isa, false, false});
#define NPQ_QGEMM(name, isa, ...) NPQ_ROW_(name, isa)
#define NPQ_QGEMM_STANDIN(name, isa, ...) NPQ_ROW_(name, isa)
#define NPQ_QIGEMM(name, isa, ...) NPQ_ROW_(name, isa)
#define NPQ_DWCONV(name, isa, ...) NPQ_ROW_(name, isa)
#define NPQ_WINOGRAD(name, isa, ...) NPQ_ROW_(name, isa)
#define NPQ_QUANTIZE(name, minmax, isa, ...) NPQ_ROW_(name, isa)
#define NPQ_VADD(name, isa, ...) NPQ_ROW_(name, isa)
#define NPQ_VMUL(name, isa, ...) NPQ_ROW_(name, isa)
#define NPQ_LUT(name, isa, ...) NPQ_ROW_(name, isa)
#define NPQ_MAXPOOL(name, isa, ...) NPQ_ROW_(name, isa)
#define NPQ_VGELU(name, isa, ...) NPQ_ROW_(name, isa)
#define NPQ_VSOFTMAX(name, isa, ...) NPQ_ROW_(name, isa)
#define NPQ_LAYERNORM(name, isa, ...) NPQ_ROW_(name, isa)
#define NPQ_VLSTM(name, isa, ...) NPQ_ROW_(name, isa)
#define NPQ_VGRU(name, isa, ...) NPQ_ROW_(name, isa)
#define NPQ_FGEMM(name, isa, ...) NPQ_ROW_(name, isa)
#include "npquant/ukernels.inc"
#undef NPQ_ROW_
  v.insert(v.end(), not_built.begin(), not_built.end());
  return v;
}

// The ISA a kernel name says it is for: the part after "__" up to a variant ("_sign").
std::string isa_of_name(const std::string& name) {
  const size_t at = name.find("__");
  if (at == std::string::npos) return "";
  const std::string tail = name.substr(at + 2);
  return tail.substr(0, tail.find('_'));
}

// Every runnable registered kernel passed checks and failed none; prints the
// per-ISA totals. Returns the number of problems.
size_t check_coverage(const std::vector<npqtest::Tally>& tallies) {
  size_t problems = 0;
  std::map<std::string, size_t> per_isa;
  std::string untested;
  std::printf("registered kernels (ukernels.inc):\n");
  for (const Registered& r : registry()) {
    size_t passed = 0, failed = 0;
    for (const auto& t : tallies) {
      passed += t.passed_naming(r.name);
      failed += t.failed_naming(r.name);
    }
    const char* state = !r.built ? "not built" : !r.runnable ? "not runnable here" : "";
    std::printf("  %-36s %-10s %9zu passed %6zu failed %s\n", r.name.c_str(), npq::isa_name(r.isa),
                passed, failed, state);
    if (isa_of_name(r.name) != npq::isa_name(r.isa)) {
      std::printf("FAIL [registry] %s is registered as %s\n", r.name.c_str(), npq::isa_name(r.isa));
      ++problems;
    }
    if (r.runnable && passed == 0) {
      std::printf("FAIL [registry] %s runs here but no test checked it\n", r.name.c_str());
      ++problems;
    }
    if (r.runnable) per_isa[npq::isa_name(r.isa)] += passed;
  }
  for (const auto& i : per_isa)
    std::printf("%-10s %zu kernel checks passed\n", i.first.c_str(), i.second);
  return problems;
}

}  // namespace
}  // namespace npqtest

int main(int argc, char** argv) {
  std::string expect_isa;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--expect-isa" && i + 1 < argc) {
      expect_isa = argv[++i];
    } else if (arg == "--quick") {
      npqtest::g_options.quick = true;
    } else {
      std::fprintf(stderr, "usage: %s [--expect-isa ISA] [--quick]\n", argv[0]);
      return 2;
    }
  }
  const auto& cpu = npq::cpu_features();
  std::string flags;
  for (const auto& f : cpu.flags()) flags += " " + f;
  std::printf("npquant native tests on %s (%s), features:%s\nrunnable GEMM kernels:",
              cpu.brand.c_str(), cpu.arch.c_str(), flags.c_str());
  for (const auto& k : npq::runnable_gemm_kernels()) std::printf(" %s", k.name);
  std::printf("\nbuilt but not runnable here (untested):");
  for (const auto& k : npq::built_gemm_kernels())
    if (!npq::can_run(k)) std::printf(" %s", k.name);
  std::printf("\n");
#if defined(NPQ_TEST_AMX_EMULATED)
  std::printf("(the AMX kernel's source also runs below with its tile instructions emulated)\n");
#endif

  struct Suite {
    const char* name;
    void (*run)(npqtest::Tally&);
  } suites[] = {
      {"gemm ukernels (edge grid + random tiles)", npqtest::test_gemm_kernels},
      {"quantize / minmax ukernels", npqtest::test_quantize_kernels},
      {"quantized add / mul ukernels", npqtest::test_elementwise_kernels},
      {"float32 GELU, softmax, LayerNorm, LSTM / GRU ukernels", npqtest::test_float_kernels},
      {"linear drivers (explicit kernels)", npqtest::test_linear_drivers},
      {"PackedLinear (the layer object)", npqtest::test_packed_linear},
      {"dispatch and self-check", npqtest::test_dispatch},
      {"conv2d paths with every ISA's conv kernels", npqtest::test_conv}};
  size_t failures = 0;
  std::vector<npqtest::Tally> tallies;
  for (const auto& s : suites) {
    npqtest::Tally t;
    const auto t0 = std::chrono::steady_clock::now();
    s.run(t);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s (%.1f s):\n", s.name, sec);
    t.report();
    failures += t.failures();
    tallies.push_back(t);
  }
  failures += npqtest::check_coverage(tallies);
  const npq::KernelSet& ks = npq::kernels();
  std::printf("chosen ISA: %s (gemm %s, quantize %s)\n", npq::isa_name(ks.cap), ks.gemm.name,
              ks.quant.name);
  if (!expect_isa.empty() && expect_isa != npq::isa_name(ks.cap)) {
    std::printf("FAIL dispatch chose %s, expected %s\n", npq::isa_name(ks.cap), expect_isa.c_str());
    ++failures;
  }
  std::printf(failures ? "FAILED: %zu checks\n" : "all checks passed\n", failures);
  return failures ? 1 : 0;
}
