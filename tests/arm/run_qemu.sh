#!/usr/bin/env bash
# Cross-builds npquant's native tests for aarch64 and runs them under qemu-user
# with three CPU models, one per ARM kernel ISA:
#   max          -> neoni8mm (I8MM, dotprod)
#   neoverse-n1  -> neondot  (dotprod, no I8MM)
#   cortex-a57   -> neon     (plain ARMv8)
# Each run checks that dispatch chose that ISA (the HWCAP detection) and prints,
# per kernel and per ISA, how many checks passed (npq_native_tests --expect-isa).
#
# Installs nothing. Needs Debian's packages (CI's .ci/run installs them):
#   apt-get install -y g++-aarch64-linux-gnu qemu-user cmake
#
# Usage: tests/arm/run_qemu.sh [build-dir]   (default build/aarch64)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build/aarch64}"
sysroot=/usr/aarch64-linux-gnu

for tool in aarch64-linux-gnu-g++ qemu-aarch64 cmake; do
  if ! command -v "$tool" >/dev/null; then
    echo "run_qemu.sh: $tool not found; apt-get install -y g++-aarch64-linux-gnu qemu-user cmake" >&2
    exit 1
  fi
done

cmake -S "$root" -B "$build" -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchain-aarch64.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DNPQUANT_BUILD_PYTHON=OFF -DNPQUANT_BUILD_TESTS=ON >/dev/null
cmake --build "$build" -j2 >/dev/null

status=0
for model in max:neoni8mm neoverse-n1:neondot cortex-a57:neon; do
  cpu="${model%%:*}" isa="${model##*:}"
  echo "=== qemu-aarch64 -cpu $cpu (expect $isa)"
  if ! qemu-aarch64 -cpu "$cpu" -L "$sysroot" "$build/tests/native/npq_native_tests" \
      --expect-isa "$isa" ${NPQ_QEMU_QUICK:+--quick}; then
    status=1
  fi
  # Every other native test registered with ctest, on the same CPU model
  # (ctest runs them through CMAKE_CROSSCOMPILING_EMULATOR; qemu reads QEMU_CPU).
  if ! QEMU_CPU="$cpu" ctest --test-dir "$build" -E '^npq_native_tests$' \
      --output-on-failure --no-tests=ignore; then
    status=1
  fi
done
exit $status
