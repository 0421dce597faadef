// AVX-VNNI peak probe: VEX-encoded vpdpbusd ymm, 32 u8*s8 MACs per instruction.
#include <cstdint>

#include "probe-asm.h"
#include "probes.h"

// The loops are inline assembly: with intrinsics the compiler hoists
// loop-invariant products out of the loop and adds register copies around
// destructive instructions, and the probe would not measure the instruction.
// Register operands are fixed; each chain is one instruction on its own
// accumulator (probe-asm.h writes the repetitions).

namespace npqbench {

// 12 chains: latency 4-5 at up to 2 per cycle needs 10.
uint64_t probe_dpbusd_ymm_vex(uint64_t iters) {
  if (iters == 0) return 0;
  const int32_t ab[2] = {0x03030303, 0x05050505};
  uint64_t n = iters;
#define NPQ_ZERO_YMM(i) NPQ_ZERO("vpxor", "ymm", i)
#define NPQ_STEP(i) NPQ_OP3("%{vex%} vpdpbusd", "ymm15", "ymm14", "ymm", i)
  asm volatile(
      "vpbroadcastd 0(%[ab]), %%ymm14\n\t"
      "vpbroadcastd 4(%[ab]), %%ymm15\n\t" NPQ_CHAINS12(NPQ_ZERO_YMM)
          NPQ_PROBE_LOOP(NPQ_CHAINS12(NPQ_STEP))
      : [n] "+r"(n)
      : [ab] "r"(ab)
      : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
        "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
#undef NPQ_STEP
#undef NPQ_ZERO_YMM
  return iters * 12 * 32;
}

}  // namespace npqbench
