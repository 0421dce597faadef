// AVX-512 VNNI peak probes: vpdpbusd zmm (64 u8*s8 MACs per instruction),
// vpdpbusd ymm EVEX (32; the stand-in encoding of the AVX-VNNI kernels), and
// fp32 FMA zmm (16) for reference. 12 chains each: latency 4-5 at up to 2 per
// cycle needs 10.
#include <cstdint>

#include "probe-asm.h"
#include "probes.h"

// The loops are inline assembly: with intrinsics the compiler hoists
// loop-invariant products out of the loop and adds register copies around
// destructive instructions, and the probe would not measure the instruction.
// Register operands are fixed; each chain is one instruction on its own
// accumulator (probe-asm.h writes the repetitions).

// 12 chains of `op zmm31/ymm31, zmm30/ymm30, <reg>0..11` on the two broadcast
// dwords ab[0], ab[1] (EVEX: registers 30 and 31 only exist there).
#define NPQ_ZMM_ZERO(i) NPQ_ZERO("vpxord", "zmm", i)
#define NPQ_YMM_ZERO(i) NPQ_ZERO("vpxord", "ymm", i)
#define NPQ_CLOBBERS                                                                              \
  "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
      "xmm10", "xmm11", "xmm30", "xmm31"

namespace npqbench {

// vpdpbusd zmm.
uint64_t probe_dpbusd_zmm(uint64_t iters) {
  if (iters == 0) return 0;
  const int32_t ab[2] = {0x03030303, 0x05050505};
  uint64_t n = iters;
#define NPQ_STEP(i) NPQ_OP3("vpdpbusd", "zmm31", "zmm30", "zmm", i)
  asm volatile(
      "vpbroadcastd 0(%[ab]), %%zmm30\n\t"
      "vpbroadcastd 4(%[ab]), %%zmm31\n\t" NPQ_CHAINS12(NPQ_ZMM_ZERO)
          NPQ_PROBE_LOOP(NPQ_CHAINS12(NPQ_STEP))
      : [n] "+r"(n)
      : [ab] "r"(ab)
      : NPQ_CLOBBERS);
#undef NPQ_STEP
  return iters * 12 * 64;
}

// vpdpbusd ymm, EVEX-encoded (operands in ymm30/31 force EVEX).
uint64_t probe_dpbusd_ymm_evex(uint64_t iters) {
  if (iters == 0) return 0;
  const int32_t ab[2] = {0x03030303, 0x05050505};
  uint64_t n = iters;
#define NPQ_STEP(i) NPQ_OP3("vpdpbusd", "ymm31", "ymm30", "ymm", i)
  asm volatile(
      "vpbroadcastd 0(%[ab]), %%ymm30\n\t"
      "vpbroadcastd 4(%[ab]), %%ymm31\n\t" NPQ_CHAINS12(NPQ_YMM_ZERO)
          NPQ_PROBE_LOOP(NPQ_CHAINS12(NPQ_STEP))
      : [n] "+r"(n)
      : [ab] "r"(ab)
      : NPQ_CLOBBERS);
#undef NPQ_STEP
  return iters * 12 * 32;
}

// fp32 FMA zmm (1.0f and 1e-9f), for reference.
uint64_t probe_fma_f32_zmm(uint64_t iters) {
  if (iters == 0) return 0;
  const int32_t ab[2] = {0x3f800000, 0x3089705f};
  uint64_t n = iters;
#define NPQ_STEP(i) NPQ_OP3("vfmadd231ps", "zmm31", "zmm30", "zmm", i)
  asm volatile(
      "vpbroadcastd 0(%[ab]), %%zmm30\n\t"
      "vpbroadcastd 4(%[ab]), %%zmm31\n\t" NPQ_CHAINS12(NPQ_ZMM_ZERO)
          NPQ_PROBE_LOOP(NPQ_CHAINS12(NPQ_STEP))
      : [n] "+r"(n)
      : [ab] "r"(ab)
      : NPQ_CLOBBERS);
#undef NPQ_STEP
  return iters * 12 * 16;
}

}  // namespace npqbench
