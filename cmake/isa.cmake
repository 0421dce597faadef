# The one table of ISAs: name, compiler flags, a compile probe, and the
# ukernel sources (ukernels/*-<isa>.cc). An ISA whose probe fails with this
# compiler is dropped (its kernels are simply not built), never fatal.
#
# npq_add_isa_kernels(<target>) adds one OBJECT library per ISA that builds,
# links it into <target>, and defines NPQ_BUILT_<ISA> on <target>.
include(CheckCXXSourceCompiles)

set(NPQ_UKERNEL_DIR ${CMAKE_CURRENT_LIST_DIR}/../csrc/npquant/ukernels)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|x64)$")
  set(NPQ_ARCH x86_64)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  set(NPQ_ARCH aarch64)
else()
  set(NPQ_ARCH other)
endif()

# isa | flags (;-separated) | probe body
set(NPQ_ISA_avx2_FLAGS -mavx2 -mfma)
set(NPQ_ISA_avx2_PROBE "__m256i a = _mm256_set1_epi16(1); a = _mm256_madd_epi16(a, a); return _mm256_extract_epi32(a, 0);")
set(NPQ_ISA_avxvnni_FLAGS -mavx2 -mfma -mavxvnni)
set(NPQ_ISA_avxvnni_PROBE "__m256i a = _mm256_set1_epi8(1); a = _mm256_dpbusd_avx_epi32(a, a, a); return _mm256_extract_epi32(a, 0);")
set(NPQ_ISA_avx512vnni_FLAGS -mavx2 -mfma -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni)
set(NPQ_ISA_avx512vnni_PROBE "__m512i a = _mm512_set1_epi8(1); a = _mm512_dpbusd_epi32(a, a, a); return _mm_cvtsi128_si32(_mm512_castsi512_si128(a));")
set(NPQ_ISA_amx_FLAGS -mavx2 -mfma -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mamx-tile -mamx-int8)
set(NPQ_ISA_amx_PROBE "_tile_zero(0); _tile_dpbusd(0, 1, 2); _tile_release(); return 0;")
set(NPQ_ISA_neondot_FLAGS -march=armv8.2-a+dotprod)
set(NPQ_ISA_neondot_PROBE "int32x4_t a = vdupq_n_s32(0); int8x16_t b = vdupq_n_s8(1); a = vdotq_s32(a, b, b); return vgetq_lane_s32(a, 0);")
# I8MM is an optional extension from ARMv8.2 on; asking for armv8.2-a+i8mm (not
# armv8.6-a) keeps the compiler to exactly the features dispatch checks.
set(NPQ_ISA_neoni8mm_FLAGS -march=armv8.2-a+dotprod+i8mm)
set(NPQ_ISA_neoni8mm_PROBE "int32x4_t a = vdupq_n_s32(0); a = vusmmlaq_s32(a, vdupq_n_u8(1), vdupq_n_s8(1)); return vgetq_lane_s32(a, 0);")
# Advanced SIMD is part of the aarch64 baseline: no flags.
set(NPQ_ISA_neon_FLAGS "")
set(NPQ_ISA_neon_PROBE "int16x8_t a = vmull_s8(vdup_n_s8(1), vdup_n_s8(2)); return vgetq_lane_s16(a, 0);")

if(NPQ_ARCH STREQUAL "x86_64")
  set(NPQ_ISAS avx2 avxvnni avx512vnni amx)
  set(NPQ_PROBE_HEADER "#include <immintrin.h>")
elseif(NPQ_ARCH STREQUAL "aarch64")
  set(NPQ_ISAS neon neondot neoni8mm)
  set(NPQ_PROBE_HEADER "#include <arm_neon.h>")
else()
  set(NPQ_ISAS "")
endif()

# GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own
# _mm512_undefined_*() placeholders (GCC bug 105593, fixed in GCC 13).
set(NPQ_UKERNEL_WARNINGS "")
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  set(NPQ_UKERNEL_WARNINGS -Wno-maybe-uninitialized)
endif()

function(npq_add_isa_kernels target)
  # Probe every ISA first: the AVX-VNNI stand-in below needs to know whether
  # AVX-512 VNNI (probed later in list order) builds.
  foreach(isa IN LISTS NPQ_ISAS)
    string(REPLACE ";" " " flags_str "${NPQ_ISA_${isa}_FLAGS}")
    set(CMAKE_REQUIRED_FLAGS "${flags_str}")
    check_cxx_source_compiles("${NPQ_PROBE_HEADER}\nint main() { ${NPQ_ISA_${isa}_PROBE} }"
                              NPQ_COMPILER_HAS_${isa})
    unset(CMAKE_REQUIRED_FLAGS)
  endforeach()
  set(built "")
  foreach(isa IN LISTS NPQ_ISAS)
    # <name>-<isa>.cc, and variants of one ISA named <name>-<isa>-<variant>.cc
    # (qu8-gemm-4x16c4-avx2-sign.cc).
    file(GLOB srcs CONFIGURE_DEPENDS ${NPQ_UKERNEL_DIR}/*-${isa}.cc ${NPQ_UKERNEL_DIR}/*-${isa}-*.cc)
    if(NOT srcs)
      continue()
    endif()
    if(NOT NPQ_COMPILER_HAS_${isa})
      message(STATUS "npquant: compiler cannot build ${isa}; its kernels are left out")
      continue()
    endif()
    add_library(npq_${isa} OBJECT ${srcs})
    target_compile_options(npq_${isa} PRIVATE ${NPQ_ISA_${isa}_FLAGS} ${NPQ_UKERNEL_WARNINGS})
    set_target_properties(npq_${isa} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_link_libraries(${target} PRIVATE npq_${isa})
    string(TOUPPER ${isa} ISA)
    target_compile_definitions(${target} PRIVATE NPQ_BUILT_${ISA})
    list(APPEND built ${isa})
    # The AVX-VNNI kernels are also built EVEX-encoded (AVX-512 VNNI + VL) as a
    # stand-in, so their logic is tested on CPUs with AVX-512 VNNI but no AVX-VNNI.
    if(isa STREQUAL "avxvnni" AND NPQ_COMPILER_HAS_avx512vnni)
      add_library(npq_avxvnni_evex OBJECT ${srcs})
      target_compile_options(npq_avxvnni_evex PRIVATE ${NPQ_ISA_avx512vnni_FLAGS} ${NPQ_UKERNEL_WARNINGS})
      target_compile_definitions(npq_avxvnni_evex PRIVATE NPQ_AVXVNNI_EVEX)
      set_target_properties(npq_avxvnni_evex PROPERTIES POSITION_INDEPENDENT_CODE ON)
      target_link_libraries(${target} PRIVATE npq_avxvnni_evex)
      target_compile_definitions(${target} PRIVATE NPQ_BUILT_AVXVNNI_EVEX)
    endif()
  endforeach()
  message(STATUS "npquant: ISA kernels built: scalar ${built}")
  set(NPQ_BUILT_ISAS ${built} PARENT_SCOPE)
endfunction()

# npq_compiler_has_isa(<isa> <out_var>): whether this compiler builds <isa>'s
# probe with its flags (the same cached check as npq_add_isa_kernels), for
# sources outside ukernels/ such as the bench's peak probes.
function(npq_compiler_has_isa isa out_var)
  if(NOT isa IN_LIST NPQ_ISAS)
    set(${out_var} FALSE PARENT_SCOPE)
    return()
  endif()
  string(REPLACE ";" " " flags_str "${NPQ_ISA_${isa}_FLAGS}")
  set(CMAKE_REQUIRED_FLAGS "${flags_str}")
  check_cxx_source_compiles("${NPQ_PROBE_HEADER}\nint main() { ${NPQ_ISA_${isa}_PROBE} }"
                            NPQ_COMPILER_HAS_${isa})
  unset(CMAKE_REQUIRED_FLAGS)
  set(${out_var} ${NPQ_COMPILER_HAS_${isa}} PARENT_SCOPE)
endfunction()

# npq_isa_sources(<isa> <sources>...): compiles these sources with <isa>'s flags
# and the ukernels' warning options (source properties are per directory: call it
# where the target is defined).
function(npq_isa_sources isa)
  set_source_files_properties(${ARGN} PROPERTIES COMPILE_OPTIONS
                              "${NPQ_ISA_${isa}_FLAGS};${NPQ_UKERNEL_WARNINGS}")
endfunction()

# npq_check_ukernel_registry(): every row of csrc/npquant/ukernels.inc names a
# source file in ukernels/ (<name with "__" and "_" as "-">.cc; stand-in rows have
# none) and every ukernels/*.cc has a row, so a kernel cannot be built without
# being dispatched, tested and benchmarked, nor registered without a source.
function(npq_check_ukernel_registry)
  set(registry ${NPQ_UKERNEL_DIR}/../ukernels.inc)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${registry})
  file(STRINGS ${registry} rows REGEX "^NPQ_[A-Z_]+\\(")
  set(expected "")
  foreach(row IN LISTS rows)
    if(row MATCHES "^NPQ_QGEMM_STANDIN\\(")
      continue()
    endif()
    if(NOT row MATCHES "^NPQ_[A-Z]+\\(([a-z0-9_]+),")
      message(FATAL_ERROR "ukernels.inc: cannot read the kernel name of: ${row}")
    endif()
    string(REPLACE "__" "-" src "${CMAKE_MATCH_1}")
    string(REPLACE "_" "-" src "${src}")
    list(APPEND expected ${src}.cc)
  endforeach()
  file(GLOB sources CONFIGURE_DEPENDS RELATIVE ${NPQ_UKERNEL_DIR} ${NPQ_UKERNEL_DIR}/*.cc)
  foreach(src IN LISTS expected)
    if(NOT src IN_LIST sources)
      message(FATAL_ERROR "ukernels.inc registers a kernel whose source csrc/npquant/ukernels/${src} does not exist")
    endif()
  endforeach()
  foreach(src IN LISTS sources)
    if(NOT src IN_LIST expected)
      message(FATAL_ERROR "csrc/npquant/ukernels/${src} has no row in csrc/npquant/ukernels.inc (docs/ukernels.md: adding a kernel)")
    endif()
  endforeach()
endfunction()
npq_check_ukernel_registry()
