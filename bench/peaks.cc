#include "peaks.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>

#include "probes.h"

namespace npqbench {

using npq::Isa;

const std::vector<Probe>& built_probes() {
  static const std::vector<Probe> probes = [] {
    std::vector<Probe> v;
#if defined(NPQ_BENCH_PROBE_AVX2)
    v.push_back({"maddubs_madd_ymm", Isa::avx2, Isa::avx2, false, true, probe_maddubs_madd_ymm});
    v.push_back({"madd_s16_ymm", Isa::avx2, Isa::avx2, false, false, probe_madd_s16_ymm});
    v.push_back(
        {"sign_maddubs_madd_ymm", Isa::avx2, Isa::avx2, false, false, probe_sign_maddubs_madd_ymm});
    v.push_back({"sign_xor_maddubs_madd_ymm", Isa::avx2, Isa::avx2, false, false,
                 probe_sign_xor_maddubs_madd_ymm});
    v.push_back({"fma_f32_ymm", Isa::avx2, Isa::avx2, false, false, probe_fma_f32_ymm});
    v.push_back({"loop_sign_3x16c8", Isa::avx2, Isa::avx2, false, false, probe_loop_sign_3x16c8});
    v.push_back({"loop_sign_1x48c8", Isa::avx2, Isa::avx2, false, false, probe_loop_sign_1x48c8});
    v.push_back({"loop_widen_4x8c4", Isa::avx2, Isa::avx2, false, false, probe_loop_widen_4x8c4});
    v.push_back({"loop_widen_6x16c2", Isa::avx2, Isa::avx2, false, false, probe_loop_widen_6x16c2});
#endif
#if defined(NPQ_BENCH_PROBE_AVXVNNI)
    v.push_back(
        {"vpdpbusd_ymm_vex", Isa::avxvnni, Isa::avxvnni, false, true, probe_dpbusd_ymm_vex});
#endif
#if defined(NPQ_BENCH_PROBE_AVX512VNNI)
    v.push_back({"vpdpbusd_zmm", Isa::avx512vnni, Isa::avx512vnni, false, true, probe_dpbusd_zmm});
    // The AVX-VNNI kernels' stand-in (EVEX) encoding runs at this rate.
    v.push_back(
        {"vpdpbusd_ymm_evex", Isa::avx512vnni, Isa::avxvnni, true, true, probe_dpbusd_ymm_evex});
    v.push_back({"fma_f32_zmm", Isa::avx512vnni, Isa::avx512vnni, false, false, probe_fma_f32_zmm});
#endif
#if defined(NPQ_BENCH_PROBE_AMX)
    v.push_back({"tdpbusd", Isa::amx, Isa::amx, false, true, probe_tdpbusd});
#endif
#if defined(NPQ_BENCH_PROBE_NEON)
    v.push_back({"smull_smlal_sadalp", Isa::neon, Isa::neon, false, true, probe_smull_smlal});
#endif
#if defined(NPQ_BENCH_PROBE_NEONDOT)
    v.push_back({"sdot", Isa::neondot, Isa::neondot, false, true, probe_sdot});
#endif
#if defined(NPQ_BENCH_PROBE_NEONI8MM)
    v.push_back({"smmla", Isa::neoni8mm, Isa::neoni8mm, false, true, probe_smmla});
#endif
    return v;
  }();
  return probes;
}

bool can_run(const Probe& p) { return npq::cpu_features().supports(p.needs); }

uint64_t run_probe(const Probe& p, int threads, uint64_t iters) {
  if (threads <= 1) return p.fn(iters);
  std::vector<uint64_t> macs(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { macs[t] = p.fn(iters); });
  for (auto& th : pool) th.join();
  uint64_t total = 0;
  for (uint64_t m : macs) total += m;
  return total;
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

uint64_t probe_iters(const Probe& p) {
  uint64_t iters = 1000;
  for (;;) {  // grow until one run takes >= 1 ms
    const auto t0 = std::chrono::steady_clock::now();
    p.fn(iters);
    const double s = seconds_since(t0);
    if (s >= 1e-3) return std::max<uint64_t>(1, static_cast<uint64_t>(iters * 1e-3 / s));
    iters *= 4;
  }
}

double peak_macs(Isa isa, bool standin, int threads) {
  static std::mutex mu;
  static std::map<std::tuple<Isa, bool, int>, double> cache;
  std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_tuple(isa, standin, threads);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  double best = 0;
  for (const Probe& p : built_probes()) {
    if (!p.is_peak || p.peak_of != isa || p.standin != standin || !can_run(p)) continue;
    const uint64_t iters = 2 * probe_iters(p);  // about 2 ms per run
    for (int rep = 0; rep < 50; ++rep) {        // the best run: preemption only lowers a sample
      const auto t0 = std::chrono::steady_clock::now();
      const uint64_t macs = run_probe(p, threads, iters);
      best = std::max(best, macs / seconds_since(t0));
    }
  }
  cache[key] = best;
  return best;
}

}  // namespace npqbench
