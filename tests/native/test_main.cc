// npquant native tests: every runnable ukernel and the Linear drivers against
// the reference, bit for bit. Prints how many checks passed per kernel and
// exits non-zero on any failure.
#include <chrono>
#include <cstdio>

#include "harness.h"
#include "npquant/cpu.h"
#include "npquant/dispatch.h"

namespace npqtest {
void test_gemm_kernels(Tally& t);
void test_quantize_kernels(Tally& t);
void test_linear_drivers(Tally& t);
void test_dispatch(Tally& t);
void test_conv(Tally& t);
}  // namespace npqtest

int main() {
  const auto& cpu = npq::cpu_features();
  std::printf("npquant native tests on %s (%s)\nrunnable GEMM kernels:", cpu.brand.c_str(),
              cpu.arch.c_str());
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
  } suites[] = {{"gemm ukernels (edge grid + random tiles)", npqtest::test_gemm_kernels},
                {"quantize / minmax ukernels", npqtest::test_quantize_kernels},
                {"linear drivers (explicit kernels)", npqtest::test_linear_drivers},
                {"dispatch and self-check", npqtest::test_dispatch},
                {"conv2d paths with every ISA's conv kernels", npqtest::test_conv}};
  size_t failures = 0;
  for (const auto& s : suites) {
    npqtest::Tally t;
    const auto t0 = std::chrono::steady_clock::now();
    s.run(t);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s (%.1f s):\n", s.name, sec);
    t.report();
    failures += t.failures();
  }
  std::printf(failures ? "FAILED: %zu checks\n" : "all checks passed\n", failures);
  return failures ? 1 : 0;
}
