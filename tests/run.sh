#!/usr/bin/env bash
# npquant's whole test suite: installs the package with its test extras, then
# runs pytest (all ISAs this CPU has, PyTorch/ONNX Runtime agreement), the
# agreement tests again on an AVX2-only CPU under qemu, and the native C++ tests
# (every ukernel against the reference).
# Usage: bash tests/run.sh        (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

echo "== install npquant with test extras"
$PY -m pip install --quiet ".[test]"

echo "== native tests and the bench smoke test (ctest)"
# The bench needs Google Benchmark (Debian/Ubuntu: libbenchmark-dev; .ci/run installs it).
BENCH=ON
if [ ! -e /usr/include/benchmark/benchmark.h ] && [ ! -e /usr/local/include/benchmark/benchmark.h ]; then
  if [ "${CI:-}" = true ]; then
    echo "the native bench needs libbenchmark-dev" >&2
    exit 1
  fi
  echo "SKIPPED native bench build (and its smoke test): apt-get install libbenchmark-dev"
  BENCH=OFF
fi
cmake -S . -B build/native-tests -DNPQUANT_BUILD_PYTHON=OFF -DNPQUANT_BUILD_TESTS=ON \
  -DNPQUANT_BUILD_BENCH=$BENCH >/dev/null
cmake --build build/native-tests -j2
ctest --test-dir build/native-tests --output-on-failure

echo "== lint: ruff, ruff format, mypy, clang-format (tests/lint.sh)"
PYTHON=$PY bash tests/lint.sh

# The sanitizer and aarch64 steps need only the compiler and qemu, and are mostly
# single-threaded, as pytest is: they run beside pytest (one core each on a 2-core
# machine, about a third off the whole run), into a log printed when they end. Their
# failure fails this script as if they had run in line.
compiled_steps() {
  echo "== native tests under AddressSanitizer + UndefinedBehaviorSanitizer"
  bash tests/native/run_sanitizers.sh native

  echo "== aarch64: native kernel tests and the extension's exactness tests under qemu"
  # Needs g++-aarch64-linux-gnu, qemu-user and the arm64 dpkg architecture (.ci/run
  # sets them up); a developer machine without them skips this step, CI fails.
  if command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null &&
      dpkg --print-foreign-architectures 2>/dev/null | grep -qx arm64; then
    bash tests/arm/run_qemu.sh
    bash tests/arm/python_qemu.sh
  elif [ "${CI:-}" = true ]; then
    echo "aarch64 tests need g++-aarch64-linux-gnu, qemu-user and 'dpkg --add-architecture arm64'" >&2
    return 1
  else
    echo "SKIPPED aarch64 tests: apt-get install g++-aarch64-linux-gnu qemu-user;" \
      "dpkg --add-architecture arm64 && apt-get update"
  fi
}
mkdir -p build
COMPILED_LOG=build/compiled-steps.log
echo "== sanitizers and aarch64 start beside pytest (log: $COMPILED_LOG, printed at the end)"
(set -euo pipefail; compiled_steps) >"$COMPILED_LOG" 2>&1 &
compiled_pid=$!
# Stop the background steps if this script fails or is interrupted first.
trap 'kill "$compiled_pid" 2>/dev/null || true' EXIT

echo "== pytest"
# After the native build: the bench tests probe the built npquant_bench (found through
# NPQUANT_BENCH_BIN: the installed package does not search the checkout for it).
if [ "$BENCH" = ON ]; then
  export NPQUANT_BENCH_BIN="$PWD/build/native-tests/bench/npquant_bench"
fi
# Run from tests/ so the installed package (not the source tree) is imported.
(cd tests && $PY -m pytest -q -p no:cacheprovider .)

echo "== AVX2-only x86 under qemu-x86_64 -cpu Haswell: peer agreement where the peers saturate"
# PyTorch and ONNX Runtime saturate int16 without VNNI (tests/peers.py); this runs the
# agreement tests in that mode on any x86-64 machine. Needs qemu-user (.ci/run installs it).
if [ "$(uname -m)" = x86_64 ]; then
  if command -v qemu-x86_64 >/dev/null; then
    PYTHON=$PY bash tests/x86/run_qemu.sh
  elif [ "${CI:-}" = true ]; then
    echo "the AVX2-only tests need qemu-x86_64: apt-get install qemu-user" >&2
    exit 1
  else
    echo "SKIPPED AVX2-only tests under qemu: apt-get install qemu-user"
  fi
fi

echo "== sanitizers and aarch64 (run beside pytest; their log follows)"
compiled_rc=0
wait "$compiled_pid" || compiled_rc=$?
trap - EXIT
cat "$COMPILED_LOG"
if [ "$compiled_rc" -ne 0 ]; then
  echo "the sanitizer / aarch64 steps failed (exit $compiled_rc): see the log above" >&2
  exit "$compiled_rc"
fi
echo "== all test steps passed"
