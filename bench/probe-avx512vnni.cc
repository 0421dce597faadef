// AVX-512 VNNI peak probes: vpdpbusd zmm (64 u8*s8 MACs per instruction),
// vpdpbusd ymm EVEX (32; the stand-in encoding of the AVX-VNNI kernels), and
// fp32 FMA zmm (16) for reference. 12 chains each: latency 4-5 at up to 2 per
// cycle needs 10.
#include <cstdint>

#include "probes.h"

// The loops are inline assembly: with intrinsics the compiler hoists
// loop-invariant products out of the loop and adds register copies around
// destructive instructions, and the probe would not measure the instruction.
// Register operands are fixed; each line is one independent chain.

namespace npqbench {

// vpdpbusd zmm.
uint64_t probe_dpbusd_zmm(uint64_t iters) {
  if (iters == 0) return 0;
  const int32_t ab[2] = {0x03030303, 0x05050505};
  uint64_t n = iters;
  asm volatile(
      "vpbroadcastd 0(%[ab]), %%zmm30\n\t"
      "vpbroadcastd 4(%[ab]), %%zmm31\n\t"
      "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
      "vpxord %%zmm1, %%zmm1, %%zmm1\n\t"
      "vpxord %%zmm2, %%zmm2, %%zmm2\n\t"
      "vpxord %%zmm3, %%zmm3, %%zmm3\n\t"
      "vpxord %%zmm4, %%zmm4, %%zmm4\n\t"
      "vpxord %%zmm5, %%zmm5, %%zmm5\n\t"
      "vpxord %%zmm6, %%zmm6, %%zmm6\n\t"
      "vpxord %%zmm7, %%zmm7, %%zmm7\n\t"
      "vpxord %%zmm8, %%zmm8, %%zmm8\n\t"
      "vpxord %%zmm9, %%zmm9, %%zmm9\n\t"
      "vpxord %%zmm10, %%zmm10, %%zmm10\n\t"
      "vpxord %%zmm11, %%zmm11, %%zmm11\n\t"
      "1:\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm0\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm1\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm2\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm3\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm4\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm5\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm6\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm7\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm8\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm9\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm10\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm11\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [ab] "r"(ab)
      : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
        "xmm9", "xmm10", "xmm11", "xmm30", "xmm31");
  return iters * 12 * 64;
}

// vpdpbusd ymm, EVEX-encoded (operands in ymm30/31 force EVEX).
uint64_t probe_dpbusd_ymm_evex(uint64_t iters) {
  if (iters == 0) return 0;
  const int32_t ab[2] = {0x03030303, 0x05050505};
  uint64_t n = iters;
  asm volatile(
      "vpbroadcastd 0(%[ab]), %%ymm30\n\t"
      "vpbroadcastd 4(%[ab]), %%ymm31\n\t"
      "vpxord %%ymm0, %%ymm0, %%ymm0\n\t"
      "vpxord %%ymm1, %%ymm1, %%ymm1\n\t"
      "vpxord %%ymm2, %%ymm2, %%ymm2\n\t"
      "vpxord %%ymm3, %%ymm3, %%ymm3\n\t"
      "vpxord %%ymm4, %%ymm4, %%ymm4\n\t"
      "vpxord %%ymm5, %%ymm5, %%ymm5\n\t"
      "vpxord %%ymm6, %%ymm6, %%ymm6\n\t"
      "vpxord %%ymm7, %%ymm7, %%ymm7\n\t"
      "vpxord %%ymm8, %%ymm8, %%ymm8\n\t"
      "vpxord %%ymm9, %%ymm9, %%ymm9\n\t"
      "vpxord %%ymm10, %%ymm10, %%ymm10\n\t"
      "vpxord %%ymm11, %%ymm11, %%ymm11\n\t"
      "1:\n\t"
      "vpdpbusd %%ymm31, %%ymm30, %%ymm0\n\t"
      "vpdpbusd %%ymm31, %%ymm30, %%ymm1\n\t"
      "vpdpbusd %%ymm31, %%ymm30, %%ymm2\n\t"
      "vpdpbusd %%ymm31, %%ymm30, %%ymm3\n\t"
      "vpdpbusd %%ymm31, %%ymm30, %%ymm4\n\t"
      "vpdpbusd %%ymm31, %%ymm30, %%ymm5\n\t"
      "vpdpbusd %%ymm31, %%ymm30, %%ymm6\n\t"
      "vpdpbusd %%ymm31, %%ymm30, %%ymm7\n\t"
      "vpdpbusd %%ymm31, %%ymm30, %%ymm8\n\t"
      "vpdpbusd %%ymm31, %%ymm30, %%ymm9\n\t"
      "vpdpbusd %%ymm31, %%ymm30, %%ymm10\n\t"
      "vpdpbusd %%ymm31, %%ymm30, %%ymm11\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [ab] "r"(ab)
      : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
        "xmm9", "xmm10", "xmm11", "xmm30", "xmm31");
  return iters * 12 * 32;
}

// fp32 FMA zmm (1.0f and 1e-9f), for reference.
uint64_t probe_fma_f32_zmm(uint64_t iters) {
  if (iters == 0) return 0;
  const int32_t ab[2] = {0x3f800000, 0x3089705f};
  uint64_t n = iters;
  asm volatile(
      "vpbroadcastd 0(%[ab]), %%zmm30\n\t"
      "vpbroadcastd 4(%[ab]), %%zmm31\n\t"
      "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
      "vpxord %%zmm1, %%zmm1, %%zmm1\n\t"
      "vpxord %%zmm2, %%zmm2, %%zmm2\n\t"
      "vpxord %%zmm3, %%zmm3, %%zmm3\n\t"
      "vpxord %%zmm4, %%zmm4, %%zmm4\n\t"
      "vpxord %%zmm5, %%zmm5, %%zmm5\n\t"
      "vpxord %%zmm6, %%zmm6, %%zmm6\n\t"
      "vpxord %%zmm7, %%zmm7, %%zmm7\n\t"
      "vpxord %%zmm8, %%zmm8, %%zmm8\n\t"
      "vpxord %%zmm9, %%zmm9, %%zmm9\n\t"
      "vpxord %%zmm10, %%zmm10, %%zmm10\n\t"
      "vpxord %%zmm11, %%zmm11, %%zmm11\n\t"
      "1:\n\t"
      "vfmadd231ps %%zmm31, %%zmm30, %%zmm0\n\t"
      "vfmadd231ps %%zmm31, %%zmm30, %%zmm1\n\t"
      "vfmadd231ps %%zmm31, %%zmm30, %%zmm2\n\t"
      "vfmadd231ps %%zmm31, %%zmm30, %%zmm3\n\t"
      "vfmadd231ps %%zmm31, %%zmm30, %%zmm4\n\t"
      "vfmadd231ps %%zmm31, %%zmm30, %%zmm5\n\t"
      "vfmadd231ps %%zmm31, %%zmm30, %%zmm6\n\t"
      "vfmadd231ps %%zmm31, %%zmm30, %%zmm7\n\t"
      "vfmadd231ps %%zmm31, %%zmm30, %%zmm8\n\t"
      "vfmadd231ps %%zmm31, %%zmm30, %%zmm9\n\t"
      "vfmadd231ps %%zmm31, %%zmm30, %%zmm10\n\t"
      "vfmadd231ps %%zmm31, %%zmm30, %%zmm11\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [ab] "r"(ab)
      : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
        "xmm9", "xmm10", "xmm11", "xmm30", "xmm31");
  return iters * 12 * 16;
}

}  // namespace npqbench
