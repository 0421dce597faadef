#include "cpu.h"

#include <cstring>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define NPQ_X86 1
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif
#if defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace npq {

namespace {
const char* const kIsaNames[] = {"scalar", "avx2", "avxvnni", "avx512vnni",
                                 "amx",    "neon", "neondot", "neoni8mm"};

#if defined(NPQ_X86)
void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
  __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}
unsigned long long xgetbv0() {
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
}

void detect_x86(CpuFeatures* f) {
  f->arch = "x86_64";
  unsigned r[4];
  cpuid(0, 0, r);
  const unsigned max_leaf = r[0];
  char vendor[13];
  std::memcpy(vendor, &r[1], 4);
  std::memcpy(vendor + 4, &r[3], 4);
  std::memcpy(vendor + 8, &r[2], 4);
  vendor[12] = 0;
  f->vendor = vendor;
  cpuid(0x80000000u, 0, r);
  if (r[0] >= 0x80000004u) {
    char brand[49];
    for (unsigned i = 0; i < 3; ++i) {
      cpuid(0x80000002u + i, 0, r);
      std::memcpy(brand + 16 * i, r, 16);
    }
    brand[48] = 0;
    std::string b(brand);
    size_t s = b.find_first_not_of(' ');
    f->brand = s == std::string::npos ? "" : b.substr(s);
  }
  if (max_leaf < 1) return;
  cpuid(1, 0, r);
  const bool osxsave = (r[2] >> 27) & 1;
  f->sse41 = (r[2] >> 19) & 1;
  const bool avx_hw = (r[2] >> 28) & 1;
  const bool fma_hw = (r[2] >> 12) & 1;
  unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
  const bool ymm_os = (xcr0 & 0x6) == 0x6;           // SSE + AVX state
  const bool zmm_os = (xcr0 & 0xE6) == 0xE6;         // + opmask, ZMM_Hi256, Hi16_ZMM
  const bool tile_os = (xcr0 & 0x60000) == 0x60000;  // XTILECFG + XTILEDATA
  f->avx = avx_hw && ymm_os;
  f->fma = fma_hw && f->avx;
  if (max_leaf >= 7) {
    cpuid(7, 0, r);
    const unsigned ebx = r[1], ecx = r[2], edx = r[3];
    f->avx2 = f->avx && ((ebx >> 5) & 1);
    f->avx512f = zmm_os && ((ebx >> 16) & 1);
    f->avx512bw = f->avx512f && ((ebx >> 30) & 1);
    f->avx512dq = f->avx512f && ((ebx >> 17) & 1);
    f->avx512vl = f->avx512f && ((ebx >> 31) & 1);
    f->avx512vnni = f->avx512f && ((ecx >> 11) & 1);
    f->avx512vbmi = f->avx512f && ((ecx >> 1) & 1);
    f->amx_tile = tile_os && ((edx >> 24) & 1);
    f->amx_int8 = tile_os && ((edx >> 25) & 1);
    cpuid(7, 1, r);
    f->avxvnni = f->avx2 && ((r[0] >> 4) & 1);
  }
#if defined(__linux__)
  if (f->amx_tile && f->amx_int8) {
    // Linux keeps AMX tile data disabled until the process asks for it.
    constexpr long kArchReqXcompPerm = 0x1023;
    constexpr long kXfeatureXtiledata = 18;
    f->amx_permitted = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }
#else
  f->amx_permitted = f->amx_tile && f->amx_int8;
#endif
}
#endif  // NPQ_X86

#if defined(__aarch64__) && defined(__APPLE__)
// A boolean hw.optional.* sysctl; false where the key does not exist (the
// FEAT_* keys arrived with macOS 12: older systems run the plain neon kernels).
bool sysctl_flag(const char* name) {
  int v = 0;
  size_t len = sizeof(v);
  return sysctlbyname(name, &v, &len, nullptr, 0) == 0 && v != 0;
}
#endif

#if defined(__aarch64__)
void detect_arm(CpuFeatures* f) {
  f->arch = "aarch64";
  f->neon = true;  // Advanced SIMD is mandatory on AArch64
#if defined(__linux__)
  const unsigned long hwcap = getauxval(AT_HWCAP);
  const unsigned long hwcap2 = getauxval(AT_HWCAP2);
  f->dotprod = (hwcap >> 20) & 1;  // HWCAP_ASIMDDP
  f->i8mm = (hwcap2 >> 13) & 1;    // HWCAP2_I8MM
#elif defined(__APPLE__)
  f->dotprod = sysctl_flag("hw.optional.arm.FEAT_DotProd");
  f->i8mm = sysctl_flag("hw.optional.arm.FEAT_I8MM");
#endif
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if defined(NPQ_X86)
  detect_x86(&f);
#elif defined(__aarch64__)
  detect_arm(&f);
#else
  f.arch = "unknown";
#endif
  return f;
}
}  // namespace

const char* isa_name(Isa isa) { return kIsaNames[static_cast<int>(isa)]; }

bool parse_isa(const std::string& token, Isa* out) {
  for (int i = 0; i < 8; ++i) {
    if (token == kIsaNames[i]) {
      *out = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

std::vector<Isa> all_isas() {
  std::vector<Isa> v;
  for (int i = 0; i < 8; ++i) v.push_back(static_cast<Isa>(i));
  return v;
}

bool CpuFeatures::supports(Isa isa) const {
  switch (isa) {
    case Isa::scalar:
      return true;
    case Isa::avx2:
      return avx2 && fma;
    case Isa::avxvnni:
      return avx2 && fma && avxvnni;
    case Isa::avx512vnni:
      return avx2 && fma && avx512f && avx512bw && avx512dq && avx512vl && avx512vnni;
    case Isa::amx:
      return supports(Isa::avx512vnni) && amx_tile && amx_int8 && amx_permitted;
    case Isa::neon:
      return neon;
    case Isa::neondot:
      return neon && dotprod;
    case Isa::neoni8mm:
      return neon && dotprod && i8mm;
  }
  return false;
}

std::vector<std::string> CpuFeatures::flags() const {
  std::vector<std::string> v;
  const std::pair<const char*, bool> all[] = {{"sse4.1", sse41},
                                              {"avx", avx},
                                              {"avx2", avx2},
                                              {"fma", fma},
                                              {"avx_vnni", avxvnni},
                                              {"avx512f", avx512f},
                                              {"avx512bw", avx512bw},
                                              {"avx512dq", avx512dq},
                                              {"avx512vl", avx512vl},
                                              {"avx512_vnni", avx512vnni},
                                              {"amx_tile", amx_tile},
                                              {"amx_int8", amx_int8},
                                              {"amx_permitted", amx_permitted},
                                              {"neon", neon},
                                              {"dotprod", dotprod},
                                              {"i8mm", i8mm}};
  for (const auto& p : all)
    if (p.second) v.emplace_back(p.first);
  return v;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

}  // namespace npq
