// The probes built into this binary, and their measured rates.
#pragma once

#include <cstdint>
#include <vector>

#include "npquant/cpu.h"

namespace npqbench {

struct Probe {
  const char* name;  // the instruction mix, e.g. "vpdpbusd_zmm"
  npq::Isa needs;    // the CPU must support this ISA to run it
  npq::Isa peak_of;  // kernels of this ISA are measured against it ...
  bool standin;      // ... (or their stand-in encoding, when true)
  bool is_peak;      // false: a reference rate (fp32 FMA, widened int16)
  uint64_t (*fn)(uint64_t iters);
};

// Probes compiled into this binary (whether or not this CPU can run them).
const std::vector<Probe>& built_probes();
bool can_run(const Probe& p);

// Runs the probe on `threads` threads at once; returns the MACs done.
uint64_t run_probe(const Probe& p, int threads, uint64_t iters_per_thread);
// Iterations that take about a millisecond on one thread.
uint64_t probe_iters(const Probe& p);

// Peak MAC/s of kernels of `isa` (stand-in encoding or not) on `threads`
// threads: the best of several short runs of its probe, measured once and
// cached. 0 if no runnable probe is the peak of that ISA.
double peak_macs(npq::Isa isa, bool standin, int threads);

}  // namespace npqbench
