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

// Kernel loops with their loads (L1-resident data; the probes above have none):
// what the AVX2 GEMM kernels' K loops can reach on a core, for deciding between
// the exact forms there (bench/RESULTS.md). ymm12 = int16 ones, ymm13 = m,
// ymm14 = |s|, ymm15 = product; accumulators from ymm0. Weights (wb) and
// prepared activations (ab) are zero: the rate does not depend on the values.
alignas(64) static uint8_t g_loop_w[2048];
alignas(64) static uint8_t g_loop_a[512];

#define NPQ_SIGN_MEM(acc, woff)              \
  "vpxor " #woff                             \
  "(%[wb]), %%ymm13, %%ymm15\n\t"            \
  "vpsubb %%ymm13, %%ymm15, %%ymm15\n\t"     \
  "vpmaddubsw %%ymm15, %%ymm14, %%ymm15\n\t" \
  "vpmaddwd %%ymm12, %%ymm15, %%ymm15\n\t"   \
  "vpaddd %%ymm15, %%ymm" #acc ", %%ymm" #acc "\n\t"
#define NPQ_C8_BCAST(off) \
  "vpbroadcastq " #off    \
  "(%[ab]), %%ymm13\n\t"  \
  "vpbroadcastq " #off "+8(%[ab]), %%ymm14\n\t"
#define NPQ_C8_ROW(off, a0, a1, a2, a3, woff) \
  NPQ_SIGN_MEM(a0, woff)                      \
  NPQ_SIGN_MEM(a1, woff + 32) NPQ_SIGN_MEM(a2, woff + 64) NPQ_SIGN_MEM(a3, woff + 96)
#define NPQ_LOOP_SETUP                     \
  "vpcmpeqw %%ymm12, %%ymm12, %%ymm12\n\t" \
  "vpsrlw $15, %%ymm12, %%ymm12\n\t"

// qu8_gemm_3x16c8__avx2_sign's K step: 3 rows x (2 vpbroadcastq + 4 sign steps
// with the weights as vpxor memory operands); 384 MACs.
uint64_t probe_loop_sign_3x16c8(uint64_t iters) {
  if (iters == 0) return 0;
  uint64_t n = iters;
  asm volatile(NPQ_LOOP_SETUP NPQ_CHAINS12(NPQ_ZERO_YMM)
                   NPQ_PROBE_LOOP(NPQ_C8_BCAST(0) NPQ_C8_ROW(0, 0, 1, 2, 3, 0) NPQ_C8_BCAST(64)
                                      NPQ_C8_ROW(64, 4, 5, 6, 7, 0) NPQ_C8_BCAST(128)
                                          NPQ_C8_ROW(128, 8, 9, 10, 11, 0))
               : [n] "+r"(n)
               : [wb] "r"(g_loop_w), [ab] "r"(g_loop_a)
               : NPQ_CLOBBERS);
  return iters * 384;
}

// qu8_gemm_1x16c8__avx2_sign's K step: one row, 2 vpbroadcastq, 3 panels x 4
// sign steps (weights from memory); 384 MACs.
uint64_t probe_loop_sign_1x48c8(uint64_t iters) {
  if (iters == 0) return 0;
  uint64_t n = iters;
  asm volatile(NPQ_LOOP_SETUP NPQ_CHAINS12(NPQ_ZERO_YMM) NPQ_PROBE_LOOP(NPQ_C8_BCAST(0) NPQ_C8_ROW(
      0, 0, 1, 2, 3, 0) NPQ_C8_ROW(0, 4, 5, 6, 7, 512) NPQ_C8_ROW(0, 8, 9, 10, 11, 1024))
               : [n] "+r"(n)
               : [wb] "r"(g_loop_w), [ab] "r"(g_loop_a)
               : NPQ_CLOBBERS);
  return iters * 384;
}

// qu8_gemm_4x8c4__avx2's K step (int16 weights): 2 weight loads, then 4 rows x
// (vpbroadcastq of 4 int16 activations, 2 x (vpmaddwd, vpaddd)); 128 MACs.
uint64_t probe_loop_widen_4x8c4(uint64_t iters) {
  if (iters == 0) return 0;
  uint64_t n = iters;
#define NPQ_WROW(off, a0, a1)               \
  "vpbroadcastq " #off                      \
  "(%[ab]), %%ymm14\n\t"                    \
  "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"  \
  "vpaddd %%ymm15, %%ymm" #a0 ", %%ymm" #a0 \
  "\n\t"                                    \
  "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"  \
  "vpaddd %%ymm15, %%ymm" #a1 ", %%ymm" #a1 "\n\t"
  asm volatile(NPQ_CHAINS12(NPQ_ZERO_YMM)
                   NPQ_PROBE_LOOP("vmovdqa 0(%[wb]), %%ymm12\n\t"
                                  "vmovdqa 32(%[wb]), %%ymm13\n\t" NPQ_WROW(0, 0, 1)
                                      NPQ_WROW(64, 2, 3) NPQ_WROW(128, 4, 5) NPQ_WROW(192, 6, 7))
               : [n] "+r"(n)
               : [wb] "r"(g_loop_w), [ab] "r"(g_loop_a)
               : NPQ_CLOBBERS);
#undef NPQ_WROW
  return iters * 128;
}

// The K pair of qu8_gemm_6x16c2__avx2: int8 weights sign-extended in the loop (2
// vpmovsxbw), 6 rows of vpbroadcastd + 2 x (vpmaddwd, vpaddd); 192 MACs.
uint64_t probe_loop_widen_6x16c2(uint64_t iters) {
  if (iters == 0) return 0;
  uint64_t n = iters;
#define NPQ_WROW(off, a0, a1)               \
  "vpbroadcastd " #off                      \
  "(%[ab]), %%ymm14\n\t"                    \
  "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"  \
  "vpaddd %%ymm15, %%ymm" #a0 ", %%ymm" #a0 \
  "\n\t"                                    \
  "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"  \
  "vpaddd %%ymm15, %%ymm" #a1 ", %%ymm" #a1 "\n\t"
  asm volatile(NPQ_CHAINS12(NPQ_ZERO_YMM)
                   NPQ_PROBE_LOOP("vpmovsxbw 0(%[wb]), %%ymm12\n\t"
                                  "vpmovsxbw 16(%[wb]), %%ymm13\n\t" NPQ_WROW(0, 0, 1)
                                      NPQ_WROW(64, 2, 3) NPQ_WROW(128, 4, 5) NPQ_WROW(192, 6, 7)
                                          NPQ_WROW(256, 8, 9) NPQ_WROW(320, 10, 11))
               : [n] "+r"(n)
               : [wb] "r"(g_loop_w), [ab] "r"(g_loop_a)
               : NPQ_CLOBBERS);
#undef NPQ_WROW
  return iters * 192;
}

#undef NPQ_LOOP_SETUP
#undef NPQ_C8_ROW
#undef NPQ_C8_BCAST
#undef NPQ_SIGN_MEM

}  // namespace npqbench
