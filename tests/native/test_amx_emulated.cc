// The AMX kernel's own source, built with its tile instructions replaced by the
// software model in amx_emulator.h (and its entry points renamed), so the
// kernel's logic runs through the GEMM edge grid on CPUs without AMX. Its
// epilogue is AVX-512, so this file is compiled with the avx512vnni flags and
// the kernel runs where AVX-512 VNNI does.
#include <immintrin.h>

#include "amx_emulator.h"

#define qu8_gemm_32x32c4__amx_requant qu8_gemm_32x32c4__amx_emulated_requant
#define qu8_gemm_32x32c4__amx_dequant qu8_gemm_32x32c4__amx_emulated_dequant
#include "npquant/ukernels/qu8-gemm-32x32c4-amx.cc"
#undef qu8_gemm_32x32c4__amx_requant
#undef qu8_gemm_32x32c4__amx_dequant

#include "npquant/dispatch.h"

namespace npqtest {

npq::QGemmKernel amx_emulated_kernel() {
  return {"qu8_gemm_32x32c4__amx (emulated tiles)",
          npq::Isa::avx512vnni,
          true,
          32,
          {32, 4, 64},
          npq::qu8_gemm_32x32c4__amx_emulated_requant,
          npq::qu8_gemm_32x32c4__amx_emulated_dequant};
}

}  // namespace npqtest
