// Peak-throughput probes: loops of independent multiply-accumulate
// instructions, one file per ISA (probe-<isa>.cc, compiled with that ISA's
// flags from cmake/isa.cmake). Like ukernel files, probe files define only the
// functions declared here: no shared inline code under ISA flags.
//
// Each probe runs `iters` iterations of its loop and returns the number of
// multiply-accumulates it performed; the caller times it.
#pragma once

#include <cstdint>

namespace npqbench {

// avx2: fp32 FMA (reference), u8*s8 maddubs+madd (the fast, saturating int16
// path peers use), s16 madd (the exact widened path).
uint64_t probe_fma_f32_ymm(uint64_t iters);
uint64_t probe_maddubs_madd_ymm(uint64_t iters);
uint64_t probe_madd_s16_ymm(uint64_t iters);
uint64_t probe_sign_maddubs_madd_ymm(uint64_t iters);
uint64_t probe_sign_xor_maddubs_madd_ymm(uint64_t iters);
// avx2 kernel loops with their L1 loads: the sign GEMM (3x16c8), the sign GEMV
// (1 row x 48 columns c8) and the widening GEMM (4x8c4).
uint64_t probe_loop_sign_3x16c8(uint64_t iters);
uint64_t probe_loop_sign_1x48c8(uint64_t iters);
uint64_t probe_loop_widen_4x8c4(uint64_t iters);
uint64_t probe_loop_widen_6x16c2(uint64_t iters);
// avxvnni: VEX vpdpbusd ymm.
uint64_t probe_dpbusd_ymm_vex(uint64_t iters);
// avx512vnni: vpdpbusd zmm and ymm (EVEX), fp32 FMA zmm (reference).
uint64_t probe_dpbusd_zmm(uint64_t iters);
uint64_t probe_dpbusd_ymm_evex(uint64_t iters);
uint64_t probe_fma_f32_zmm(uint64_t iters);
// amx: tdpbusd on four 16x16 int32 accumulator tiles (16x64 u8 by 16x64 s8).
uint64_t probe_tdpbusd(uint64_t iters);
// neon: smull + smlal + sadalp (8-bit products into int16 pairs into int32).
uint64_t probe_smull_smlal(uint64_t iters);
// neondot: sdot; neoni8mm: smmla.
uint64_t probe_sdot(uint64_t iters);
uint64_t probe_smmla(uint64_t iters);

}  // namespace npqbench
