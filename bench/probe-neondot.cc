// Arm dot-product peak probe: sdot (16 s8*s8 MACs per instruction).
#include <cstdint>

#include "probes.h"

// The loops are inline assembly: with intrinsics the compiler hoists
// loop-invariant products out of the loop and adds register copies around
// destructive instructions, and the probe would not measure the instruction.
// Register operands are fixed; each line is one independent chain.

namespace npqbench {

// 12 independent chains.
uint64_t probe_sdot(uint64_t iters) {
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
      "movi v8.4s, #0\n\t"
      "movi v9.4s, #0\n\t"
      "movi v10.4s, #0\n\t"
      "movi v11.4s, #0\n\t"
      "1:\n\t"
      "sdot v0.4s, v30.16b, v31.16b\n\t"
      "sdot v1.4s, v30.16b, v31.16b\n\t"
      "sdot v2.4s, v30.16b, v31.16b\n\t"
      "sdot v3.4s, v30.16b, v31.16b\n\t"
      "sdot v4.4s, v30.16b, v31.16b\n\t"
      "sdot v5.4s, v30.16b, v31.16b\n\t"
      "sdot v6.4s, v30.16b, v31.16b\n\t"
      "sdot v7.4s, v30.16b, v31.16b\n\t"
      "sdot v8.4s, v30.16b, v31.16b\n\t"
      "sdot v9.4s, v30.16b, v31.16b\n\t"
      "sdot v10.4s, v30.16b, v31.16b\n\t"
      "sdot v11.4s, v30.16b, v31.16b\n\t"
      "subs %[n], %[n], #1\n\t"
      "b.ne 1b\n\t"
      : [n] "+r"(n)
      :
      : "cc", "memory", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11",
        "v30", "v31");
  return iters * 12 * 16;
}

}  // namespace npqbench
