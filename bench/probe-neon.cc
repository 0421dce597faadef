// Plain NEON peak probe: smull + smlal (16 s8*s8 products summed in pairs
// into eight int16) and sadalp (pairs into four int32) per 16 MACs, the inner
// loop of XNNPACK's c8 neon-mull kernels and ruy's arm64 kernel.
#include <cstdint>

#include "probes.h"

// The loops are inline assembly: with intrinsics the compiler hoists
// loop-invariant products out of the loop and adds register copies around
// destructive instructions, and the probe would not measure the instruction.
// Register operands are fixed; each line is one independent chain.

namespace npqbench {

// Eight chains (accumulators v0-7, temporaries v16-23).
uint64_t probe_smull_smlal(uint64_t iters) {
  if (iters == 0) return 0;
  uint64_t n = iters;
  asm volatile(
      "movi v30.16b, #3\n\t"
      "movi v31.16b, #5\n\t"
      "movi v0.4s, #0\n\t"
      "movi v1.4s, #0\n\t"
      "movi v2.4s, #0\n\t"
      "movi v3.4s, #0\n\t"
      "movi v4.4s, #0\n\t"
      "movi v5.4s, #0\n\t"
      "movi v6.4s, #0\n\t"
      "movi v7.4s, #0\n\t"
      "1:\n\t"
      "smull v16.8h, v30.8b, v31.8b\n\t"
      "smlal v16.8h, v30.8b, v31.8b\n\t"
      "sadalp v0.4s, v16.8h\n\t"
      "smull v17.8h, v30.8b, v31.8b\n\t"
      "smlal v17.8h, v30.8b, v31.8b\n\t"
      "sadalp v1.4s, v17.8h\n\t"
      "smull v18.8h, v30.8b, v31.8b\n\t"
      "smlal v18.8h, v30.8b, v31.8b\n\t"
      "sadalp v2.4s, v18.8h\n\t"
      "smull v19.8h, v30.8b, v31.8b\n\t"
      "smlal v19.8h, v30.8b, v31.8b\n\t"
      "sadalp v3.4s, v19.8h\n\t"
      "smull v20.8h, v30.8b, v31.8b\n\t"
      "smlal v20.8h, v30.8b, v31.8b\n\t"
      "sadalp v4.4s, v20.8h\n\t"
      "smull v21.8h, v30.8b, v31.8b\n\t"
      "smlal v21.8h, v30.8b, v31.8b\n\t"
      "sadalp v5.4s, v21.8h\n\t"
      "smull v22.8h, v30.8b, v31.8b\n\t"
      "smlal v22.8h, v30.8b, v31.8b\n\t"
      "sadalp v6.4s, v22.8h\n\t"
      "smull v23.8h, v30.8b, v31.8b\n\t"
      "smlal v23.8h, v30.8b, v31.8b\n\t"
      "sadalp v7.4s, v23.8h\n\t"
      "subs %[n], %[n], #1\n\t"
      "b.ne 1b\n\t"
      : [n] "+r"(n)
      :
      : "cc", "memory", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v16", "v17", "v18", "v19",
        "v20", "v21", "v22", "v23", "v30", "v31");
  return iters * 8 * 16;
}

}  // namespace npqbench
