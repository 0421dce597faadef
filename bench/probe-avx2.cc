// AVX2 peak probes: fp32 FMA (reference), u8*s8 maddubs+madd (the fast but
// int16-saturating path of FBGEMM and MLAS), s16 madd (the exact widened path),
// sign+maddubs+madd (the exact sign trick).
#include <cstdint>

#include "probe-asm.h"
#include "probes.h"

// The loops are inline assembly: with intrinsics the compiler hoists
// loop-invariant products out of the loop and adds register copies around
// destructive instructions, and the probe would not measure the instruction.
// Register operands are fixed; each chain runs on its own accumulator
// (probe-asm.h writes the repetitions).

#define NPQ_CLOBBERS                                                                              \
  "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
      "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
#define NPQ_ZERO_YMM(i) NPQ_ZERO("vpxor", "ymm", i)

namespace npqbench {

// 12 FMA chains (latency 4 at 2 per cycle needs 8+): 8 MACs each.
uint64_t probe_fma_f32_ymm(uint64_t iters) {
  if (iters == 0) return 0;
  const float ab[2] = {1.0f, 1e-9f};
  uint64_t n = iters;
#define NPQ_ZERO_PS(i) NPQ_ZERO("vxorps", "ymm", i)
#define NPQ_STEP(i) NPQ_OP3("vfmadd231ps", "ymm15", "ymm14", "ymm", i)
  asm volatile(
      "vbroadcastss 0(%[ab]), %%ymm14\n\t"
      "vbroadcastss 4(%[ab]), %%ymm15\n\t" NPQ_CHAINS12(NPQ_ZERO_PS)
          NPQ_PROBE_LOOP(NPQ_CHAINS12(NPQ_STEP))
      : [n] "+r"(n)
      : [ab] "r"(ab)
      : NPQ_CLOBBERS);
#undef NPQ_STEP
#undef NPQ_ZERO_PS
  return iters * 12 * 8;
}

// Per 32 MACs: vpmaddubsw (u8*s8 pairs to int16), vpmaddwd with ones (pairs
// to int32), vpaddd into the accumulator: the inner loop of FBGEMM/MLAS AVX2.
// Six chains (accumulators ymm0-5, temporaries ymm6-11).
uint64_t probe_maddubs_madd_ymm(uint64_t iters) {
  if (iters == 0) return 0;
  const int32_t ab[3] = {0x03030303, 0x05050505, 0x00010001};
  uint64_t n = iters;
#define NPQ_STEP(acc, tmp)                             \
  NPQ_OP3("vpmaddubsw", "ymm14", "ymm13", "ymm", tmp)  \
  NPQ_OP3("vpmaddwd", "ymm15", "ymm" #tmp, "ymm", tmp) \
  NPQ_OP3("vpaddd", "ymm" #tmp, "ymm" #acc, "ymm", acc)
  asm volatile(
      "vpbroadcastd 0(%[ab]), %%ymm13\n\t"
      "vpbroadcastd 4(%[ab]), %%ymm14\n\t"
      "vpbroadcastd 8(%[ab]), %%ymm15\n\t" NPQ_CHAINS6(NPQ_ZERO_YMM)
          NPQ_PROBE_LOOP(NPQ_CHAIN_PAIRS6(NPQ_STEP))
      : [n] "+r"(n)
      : [ab] "r"(ab)
      : NPQ_CLOBBERS);
#undef NPQ_STEP
  return iters * 6 * 32;
}

// Per 32 MACs, the sign trick (exact for weights in [-127, 127]; the
// qu8_gemm_4x16c4__avx2_sign kernel's inner step): vpsignb (weights take the
// activations' signs), vpmaddubsw (|s8 activations| * signed weights, pairs to
// int16), vpmaddwd with ones, vpaddd. Six chains, accumulators ymm0-5,
// temporaries ymm6-11; s in ymm12, |s| in ymm13, weights ymm14, ones ymm15.
uint64_t probe_sign_maddubs_madd_ymm(uint64_t iters) {
  if (iters == 0) return 0;
  const int32_t ab[4] = {static_cast<int32_t>(0x83FD0305), 0x7D030305, 0x05FB7F81, 0x00010001};
  uint64_t n = iters;
#define NPQ_STEP(acc, tmp)                               \
  NPQ_OP3("vpsignb", "ymm12", "ymm14", "ymm", tmp)       \
  NPQ_OP3("vpmaddubsw", "ymm" #tmp, "ymm13", "ymm", tmp) \
  NPQ_OP3("vpmaddwd", "ymm15", "ymm" #tmp, "ymm", tmp)   \
  NPQ_OP3("vpaddd", "ymm" #tmp, "ymm" #acc, "ymm", acc)
  asm volatile(
      "vpbroadcastd 0(%[ab]), %%ymm12\n\t"
      "vpabsb %%ymm12, %%ymm13\n\t"
      "vpbroadcastd 8(%[ab]), %%ymm14\n\t"
      "vpbroadcastd 12(%[ab]), %%ymm15\n\t" NPQ_CHAINS6(NPQ_ZERO_YMM)
          NPQ_PROBE_LOOP(NPQ_CHAIN_PAIRS6(NPQ_STEP))
      : [n] "+r"(n)
      : [ab] "r"(ab)
      : NPQ_CLOBBERS);
#undef NPQ_STEP
  return iters * 6 * 32;
}

// The same with the negation as vpxor + vpsubb by the sign mask (ymm12; what
// the kernel runs: on Zen 4 vpsignb shares the two multiply pipes, these do not).
uint64_t probe_sign_xor_maddubs_madd_ymm(uint64_t iters) {
  if (iters == 0) return 0;
  const int32_t ab[4] = {static_cast<int32_t>(0xFF0000FF), 0x7D030305, 0x05FB7F81, 0x00010001};
  uint64_t n = iters;
#define NPQ_STEP(acc, tmp)                               \
  NPQ_OP3("vpxor", "ymm12", "ymm14", "ymm", tmp)         \
  NPQ_OP3("vpsubb", "ymm12", "ymm" #tmp, "ymm", tmp)     \
  NPQ_OP3("vpmaddubsw", "ymm" #tmp, "ymm13", "ymm", tmp) \
  NPQ_OP3("vpmaddwd", "ymm15", "ymm" #tmp, "ymm", tmp)   \
  NPQ_OP3("vpaddd", "ymm" #tmp, "ymm" #acc, "ymm", acc)
  asm volatile(
      "vpbroadcastd 0(%[ab]), %%ymm12\n\t"
      "vpbroadcastd 4(%[ab]), %%ymm13\n\t"
      "vpbroadcastd 8(%[ab]), %%ymm14\n\t"
      "vpbroadcastd 12(%[ab]), %%ymm15\n\t" NPQ_CHAINS6(NPQ_ZERO_YMM)
          NPQ_PROBE_LOOP(NPQ_CHAIN_PAIRS6(NPQ_STEP))
      : [n] "+r"(n)
      : [ab] "r"(ab)
      : NPQ_CLOBBERS);
#undef NPQ_STEP
  return iters * 6 * 32;
}

// Per 16 MACs: vpmaddwd (s16*s16 pairs to int32) and vpaddd. Six chains.
uint64_t probe_madd_s16_ymm(uint64_t iters) {
  if (iters == 0) return 0;
  const int32_t ab[2] = {0x00030003, 0x00050005};
  uint64_t n = iters;
#define NPQ_STEP(acc, tmp)                          \
  NPQ_OP3("vpmaddwd", "ymm15", "ymm14", "ymm", tmp) \
  NPQ_OP3("vpaddd", "ymm" #tmp, "ymm" #acc, "ymm", acc)
  asm volatile(
      "vpbroadcastd 0(%[ab]), %%ymm14\n\t"
      "vpbroadcastd 4(%[ab]), %%ymm15\n\t" NPQ_CHAINS6(NPQ_ZERO_YMM)
          NPQ_PROBE_LOOP(NPQ_CHAIN_PAIRS6(NPQ_STEP))
      : [n] "+r"(n)
      : [ab] "r"(ab)
      : NPQ_CLOBBERS);
#undef NPQ_STEP
  return iters * 6 * 16;
}

}  // namespace npqbench
