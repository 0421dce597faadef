// AVX2 peak probes: fp32 FMA (reference), u8*s8 maddubs+madd (the fast but
// int16-saturating path of FBGEMM and MLAS), s16 madd (the exact widened path).
#include <cstdint>

#include "probes.h"

// The loops are inline assembly: with intrinsics the compiler hoists
// loop-invariant products out of the loop and adds register copies around
// destructive instructions, and the probe would not measure the instruction.
// Register operands are fixed; each line is one independent chain.

namespace npqbench {

// 12 FMA chains (latency 4 at 2 per cycle needs 8+): 8 MACs each.
uint64_t probe_fma_f32_ymm(uint64_t iters) {
  if (iters == 0) return 0;
  const float ab[2] = {1.0f, 1e-9f};
  uint64_t n = iters;
  asm volatile(
      "vbroadcastss 0(%[ab]), %%ymm14\n\t"
      "vbroadcastss 4(%[ab]), %%ymm15\n\t"
      "vxorps %%ymm0, %%ymm0, %%ymm0\n\t"
      "vxorps %%ymm1, %%ymm1, %%ymm1\n\t"
      "vxorps %%ymm2, %%ymm2, %%ymm2\n\t"
      "vxorps %%ymm3, %%ymm3, %%ymm3\n\t"
      "vxorps %%ymm4, %%ymm4, %%ymm4\n\t"
      "vxorps %%ymm5, %%ymm5, %%ymm5\n\t"
      "vxorps %%ymm6, %%ymm6, %%ymm6\n\t"
      "vxorps %%ymm7, %%ymm7, %%ymm7\n\t"
      "vxorps %%ymm8, %%ymm8, %%ymm8\n\t"
      "vxorps %%ymm9, %%ymm9, %%ymm9\n\t"
      "vxorps %%ymm10, %%ymm10, %%ymm10\n\t"
      "vxorps %%ymm11, %%ymm11, %%ymm11\n\t"
      "1:\n\t"
      "vfmadd231ps %%ymm15, %%ymm14, %%ymm0\n\t"
      "vfmadd231ps %%ymm15, %%ymm14, %%ymm1\n\t"
      "vfmadd231ps %%ymm15, %%ymm14, %%ymm2\n\t"
      "vfmadd231ps %%ymm15, %%ymm14, %%ymm3\n\t"
      "vfmadd231ps %%ymm15, %%ymm14, %%ymm4\n\t"
      "vfmadd231ps %%ymm15, %%ymm14, %%ymm5\n\t"
      "vfmadd231ps %%ymm15, %%ymm14, %%ymm6\n\t"
      "vfmadd231ps %%ymm15, %%ymm14, %%ymm7\n\t"
      "vfmadd231ps %%ymm15, %%ymm14, %%ymm8\n\t"
      "vfmadd231ps %%ymm15, %%ymm14, %%ymm9\n\t"
      "vfmadd231ps %%ymm15, %%ymm14, %%ymm10\n\t"
      "vfmadd231ps %%ymm15, %%ymm14, %%ymm11\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [ab] "r"(ab)
      : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
        "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
  return iters * 12 * 8;
}

// Per 32 MACs: vpmaddubsw (u8*s8 pairs to int16), vpmaddwd with ones (pairs
// to int32), vpaddd into the accumulator: the inner loop of FBGEMM/MLAS AVX2.
// Six chains (accumulators ymm0-5, temporaries ymm6-11).
uint64_t probe_maddubs_madd_ymm(uint64_t iters) {
  if (iters == 0) return 0;
  const int32_t ab[3] = {0x03030303, 0x05050505, 0x00010001};
  uint64_t n = iters;
  asm volatile(
      "vpbroadcastd 0(%[ab]), %%ymm13\n\t"
      "vpbroadcastd 4(%[ab]), %%ymm14\n\t"
      "vpbroadcastd 8(%[ab]), %%ymm15\n\t"
      "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
      "vpxor %%ymm1, %%ymm1, %%ymm1\n\t"
      "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
      "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
      "vpxor %%ymm4, %%ymm4, %%ymm4\n\t"
      "vpxor %%ymm5, %%ymm5, %%ymm5\n\t"
      "1:\n\t"
      "vpmaddubsw %%ymm14, %%ymm13, %%ymm6\n\t"
      "vpmaddwd %%ymm15, %%ymm6, %%ymm6\n\t"
      "vpaddd %%ymm6, %%ymm0, %%ymm0\n\t"
      "vpmaddubsw %%ymm14, %%ymm13, %%ymm7\n\t"
      "vpmaddwd %%ymm15, %%ymm7, %%ymm7\n\t"
      "vpaddd %%ymm7, %%ymm1, %%ymm1\n\t"
      "vpmaddubsw %%ymm14, %%ymm13, %%ymm8\n\t"
      "vpmaddwd %%ymm15, %%ymm8, %%ymm8\n\t"
      "vpaddd %%ymm8, %%ymm2, %%ymm2\n\t"
      "vpmaddubsw %%ymm14, %%ymm13, %%ymm9\n\t"
      "vpmaddwd %%ymm15, %%ymm9, %%ymm9\n\t"
      "vpaddd %%ymm9, %%ymm3, %%ymm3\n\t"
      "vpmaddubsw %%ymm14, %%ymm13, %%ymm10\n\t"
      "vpmaddwd %%ymm15, %%ymm10, %%ymm10\n\t"
      "vpaddd %%ymm10, %%ymm4, %%ymm4\n\t"
      "vpmaddubsw %%ymm14, %%ymm13, %%ymm11\n\t"
      "vpmaddwd %%ymm15, %%ymm11, %%ymm11\n\t"
      "vpaddd %%ymm11, %%ymm5, %%ymm5\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [ab] "r"(ab)
      : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
        "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
  return iters * 6 * 32;
}

// Per 16 MACs: vpmaddwd (s16*s16 pairs to int32) and vpaddd. Six chains.
uint64_t probe_madd_s16_ymm(uint64_t iters) {
  if (iters == 0) return 0;
  const int32_t ab[2] = {0x00030003, 0x00050005};
  uint64_t n = iters;
  asm volatile(
      "vpbroadcastd 0(%[ab]), %%ymm14\n\t"
      "vpbroadcastd 4(%[ab]), %%ymm15\n\t"
      "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
      "vpxor %%ymm1, %%ymm1, %%ymm1\n\t"
      "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
      "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
      "vpxor %%ymm4, %%ymm4, %%ymm4\n\t"
      "vpxor %%ymm5, %%ymm5, %%ymm5\n\t"
      "1:\n\t"
      "vpmaddwd %%ymm15, %%ymm14, %%ymm6\n\t"
      "vpaddd %%ymm6, %%ymm0, %%ymm0\n\t"
      "vpmaddwd %%ymm15, %%ymm14, %%ymm7\n\t"
      "vpaddd %%ymm7, %%ymm1, %%ymm1\n\t"
      "vpmaddwd %%ymm15, %%ymm14, %%ymm8\n\t"
      "vpaddd %%ymm8, %%ymm2, %%ymm2\n\t"
      "vpmaddwd %%ymm15, %%ymm14, %%ymm9\n\t"
      "vpaddd %%ymm9, %%ymm3, %%ymm3\n\t"
      "vpmaddwd %%ymm15, %%ymm14, %%ymm10\n\t"
      "vpaddd %%ymm10, %%ymm4, %%ymm4\n\t"
      "vpmaddwd %%ymm15, %%ymm14, %%ymm11\n\t"
      "vpaddd %%ymm11, %%ymm5, %%ymm5\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [ab] "r"(ab)
      : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
        "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
  return iters * 6 * 16;
}

}  // namespace npqbench
