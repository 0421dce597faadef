# Cross-compiling npquant for aarch64 Linux with Debian's cross toolchain:
#   apt-get install g++-aarch64-linux-gnu qemu-user
#   cmake -S . -B build/aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake \
#         -DNPQUANT_BUILD_PYTHON=OFF -DNPQUANT_BUILD_TESTS=ON
# Test binaries run under qemu-user (CMAKE_CROSSCOMPILING_EMULATOR, so ctest
# works). qemu reads the CPU model from QEMU_CPU (e.g. max, neoverse-n1,
# cortex-a57); the default is `max` (every ISA npquant has for aarch64).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(NPQ_AARCH64_TRIPLE aarch64-linux-gnu CACHE STRING "GNU triple of the aarch64 cross toolchain")
set(NPQ_AARCH64_SYSROOT /usr/${NPQ_AARCH64_TRIPLE} CACHE PATH
    "Root of the aarch64 C library (qemu-user's -L)")

set(CMAKE_C_COMPILER ${NPQ_AARCH64_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${NPQ_AARCH64_TRIPLE}-g++)

# Libraries and headers come from the target's tree (and multiarch arm64
# packages under /usr/lib/aarch64-linux-gnu); programs from the build machine.
set(CMAKE_FIND_ROOT_PATH ${NPQ_AARCH64_SYSROOT} /usr/lib/${NPQ_AARCH64_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

find_program(NPQ_QEMU_AARCH64 qemu-aarch64)
if(NPQ_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${NPQ_QEMU_AARCH64} -L ${NPQ_AARCH64_SYSROOT})
endif()
