// CPU feature detection (once per process) and NPQUANT_ISA parsing.
#pragma once

#include <string>
#include <vector>

namespace npq {

// The one set of ISA tokens (also used by file names, CMake, NPQUANT_ISA and Python).
enum class Isa : int { scalar = 0, avx2, avxvnni, avx512vnni, amx, neon, neondot, neoni8mm };

const char* isa_name(Isa isa);
// Parses a token; returns false for an unknown one.
bool parse_isa(const std::string& token, Isa* out);
std::vector<Isa> all_isas();

struct CpuFeatures {
  std::string arch;    // "x86_64", "aarch64", ...
  std::string vendor;  // cpuid vendor string, "" elsewhere
  std::string brand;   // cpuid brand string / "" elsewhere
  // x86 (already combined with the OS's XSAVE state support)
  bool sse41 = false, avx = false, avx2 = false, fma = false, avxvnni = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false, avx512vnni = false;
  bool avx512vbmi = false;  // not an ISA of its own: one avx512vnni kernel variant needs it
  bool amx_tile = false, amx_int8 = false;
  bool amx_permitted = false;  // arch_prctl(ARCH_REQ_XCOMP_PERM) succeeded
  // arm
  bool neon = false, dotprod = false, i8mm = false;

  // Whether this CPU (and OS) can run kernels of the given ISA.
  bool supports(Isa isa) const;
  // Names of the true flags, for cpu_info().
  std::vector<std::string> flags() const;
};

const CpuFeatures& cpu_features();

}  // namespace npq
