#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer runs (any report is fatal):
#   1. the native test binaries (tests/native: ukernels and drivers against the
#      reference, canary-guarded output buffers), built with -fsanitize=address,undefined;
#   2. the thread pool's stress test under ThreadSanitizer;
#   3. the Python extension built the same way, loaded with LD_PRELOAD=libasan into a
#      small pytest subset (Python-level bad input, exactness, threads, hypothesis).
# Usage: bash tests/native/run_sanitizers.sh [native|python|all]   (default: all)
# ASan's detect_stack_use_after_return is off: its fake stack frames are not 64-byte
# aligned, and GCC 12 spills __m512 locals with aligned moves (vmovaps) there, so
# AVX-512 kernels fault under it although they are correct.
# Needs: g++ (with libasan/libubsan, Debian's g++ has them), cmake, ninja or make,
# pybind11 and the test dependencies of tests/run.sh. Builds in build/sanitize-*.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
WHAT=${1:-all}
JOBS=${JOBS:-2}

SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1"
# detect_leaks: the native binary must free everything; CPython itself does not, so the
# Python run turns leak checking off (the RSS test in tests/ covers growth instead).
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
GEN=$(command -v ninja >/dev/null && echo "-G Ninja" || echo "")

configure() {  # configure <build dir> <extra cmake args...>
  local dir=$1; shift
  cmake -S . -B "$dir" $GEN -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS="$SAN_FLAGS" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
    -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" \
    "$@" >/dev/null
}

run_native() {
  if [ ! -f tests/native/CMakeLists.txt ]; then
    echo "ERROR: tests/native/CMakeLists.txt is missing: no native test binary to sanitize" >&2
    return 1
  fi
  echo "== native tests under ASan+UBSan"
  configure build/sanitize-native -DNPQUANT_BUILD_PYTHON=OFF -DNPQUANT_BUILD_TESTS=ON
  cmake --build build/sanitize-native -j"$JOBS"
  # every native test binary (ctest runs what tests/native/CMakeLists.txt registers)
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1" \
    ctest --test-dir build/sanitize-native --output-on-failure --verbose
}

# The thread pool's join/close protocol under ThreadSanitizer: the stress build
# (sleeps widening its race windows) and the plain one. Any data race is fatal.
run_tsan() {
  echo "== thread pool under ThreadSanitizer"
  mkdir -p build/sanitize-tsan
  for pause in 150 0; do
    g++ -std=c++17 -O1 -g -fsanitize=thread -DNPQ_THREADPOOL_STRESS=$pause -Icsrc \
      tests/native/threadpool_stress.cc csrc/npquant/ops/threadpool.cc -pthread \
      -o build/sanitize-tsan/threadpool_stress_$pause
    TSAN_OPTIONS="halt_on_error=1" build/sanitize-tsan/threadpool_stress_$pause
  done
}

run_python() {
  echo "== Python extension under ASan+UBSan (LD_PRELOAD libasan), pytest subset"
  local pybind_dir
  pybind_dir=$($PY -m pybind11 --cmakedir)
  configure build/sanitize-python -DNPQUANT_BUILD_PYTHON=ON -DNPQUANT_BUILD_TESTS=OFF \
    -Dpybind11_DIR="$pybind_dir" -DPython_EXECUTABLE="$(command -v "$PY")"
  cmake --build build/sanitize-python -j"$JOBS" --target _C
  # A package tree with the sanitized extension next to the Python sources.
  local pkg=build/sanitize-python/pkg
  rm -rf "$pkg" && mkdir -p "$pkg"
  cp -r python/npquant "$pkg/npquant"
  rm -f "$pkg"/npquant/_C*.so
  cp build/sanitize-python/_C*.so "$pkg/npquant/"
  # libstdc++ is preloaded too: python does not link it, and ASan's __cxa_throw
  # interceptor must find the real one at start-up (else every C++ exception aborts).
  local preload
  preload="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)"
  # Each file is a few seconds uninstrumented; ASan makes them 2-5x slower. Hypothesis
  # examples are capped (HYPOTHESIS_PROFILE=sanitize in tests/conftest.py).
  (cd tests && PYTHONPATH="$PWD/../$pkg" LD_PRELOAD="$preload" HYPOTHESIS_PROFILE=sanitize \
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1" \
    $PY -m pytest -q -p no:cacheprovider -x \
      test_bad_input.py test_linear_exact.py test_properties.py test_properties_api.py \
      test_threads.py -k "not torch")
}

case "$WHAT" in
  native) run_native; run_tsan ;;
  python) run_python ;;
  all) run_native; run_tsan; run_python ;;
  *) echo "usage: $0 [native|python|all]" >&2; exit 2 ;;
esac
echo "== sanitizers: clean"
