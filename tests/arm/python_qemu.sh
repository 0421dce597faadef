#!/usr/bin/env bash
# Cross-compiles the Python extension npquant._C for aarch64 and runs pytest's
# kernel-exactness tests on an arm64 Python (Debian's python3.11 + NumPy) under
# qemu-user, once per CPU model:
#   max -> neoni8mm, neoverse-n1 -> neondot, cortex-a57 -> neon.
#
# Needs, on the build machine (CI's .ci/run does this):
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install -y g++-aarch64-linux-gnu qemu-user cmake
#   python3 -m pip install pybind11          (only its headers and CMake files)
# The arm64 Python, NumPy and pytest are Debian packages fetched with
# `apt-get download` and unpacked with `dpkg -x` into $work/root (cached there):
# nothing is installed on the system. There is no binfmt_misc, so tests that
# start a child interpreter start it through qemu (NPQUANT_TEST_LAUNCHER).
#
# Usage: tests/arm/python_qemu.sh [pytest args...]
#   (default: the exactness tests cheap enough for an emulated CPU)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="${NPQ_ARM64_PYTHON_DIR:-$repo/build/arm64-python}"
root="$work/root"
py="$root/usr/bin/python3.11"

# Debian bookworm arm64: python3.11 with its shared-library dependencies, its
# headers (for the cross build), NumPy with BLAS/LAPACK, and pytest (arch: all).
arm64_pkgs=(libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libssl3 libffi8 libbz2-1.0 liblzma5
  libcrypt1 libuuid1 libncursesw6 libtinfo6 libreadline8 libsqlite3-0 libdb5.3 libnsl2
  libtirpc3 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libpython3.11-dev
  python3-numpy libblas3 liblapack3 libgfortran5)
all_pkgs=(python3-pytest python3-pluggy python3-iniconfig python3-packaging python3-py
  python3-attr python3-more-itertools python3-pkg-resources)

assemble_root() {
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "python_qemu.sh: apt does not know arm64; run: dpkg --add-architecture arm64 && apt-get update" >&2
    exit 1
  fi
  rm -rf "$work/debs" "$root"
  mkdir -p "$work/debs"
  chown _apt "$work/debs" 2>/dev/null || true  # lets apt download without its sandbox warning
  (cd "$work/debs" && apt-get download -qq "${arm64_pkgs[@]/%/:arm64}" "${all_pkgs[@]}")
  for deb in "$work/debs"/*.deb; do dpkg -x "$deb" "$root"; done
  # BLAS/LAPACK are update-alternatives links that dpkg -x does not create.
  local lib="$root/usr/lib/aarch64-linux-gnu"
  ln -sf blas/libblas.so.3 "$lib/libblas.so.3"
  ln -sf lapack/liblapack.so.3 "$lib/liblapack.so.3"
}

[ -x "$py" ] || assemble_root

echo "== cross-building npquant._C for aarch64"
if ! pybind11_dir="$("${PYTHON:-python3}" -m pybind11 --cmakedir)"; then
  echo "python_qemu.sh: needs pybind11 in ${PYTHON:-python3}: pip install pybind11" >&2
  exit 1
fi
build="$work/build"
cmake -S "$repo" -B "$build" -DCMAKE_TOOLCHAIN_FILE="$repo/cmake/toolchain-aarch64.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DNPQUANT_BUILD_PYTHON=ON \
  -DPython_INCLUDE_DIR="$root/usr/include/python3.11" \
  -DCMAKE_CXX_FLAGS="-idirafter $root/usr/include" \
  -DPYTHON_MODULE_EXTENSION=.cpython-311-aarch64-linux-gnu.so -DPYTHON_IS_DEBUG=0 \
  -DPYTHON_MODULE_DEBUG_POSTFIX= \
  -Dpybind11_DIR="$pybind11_dir" >/dev/null
cmake --build "$build" -j2 >/dev/null
site="$work/site"
rm -rf "$site"
mkdir -p "$site"
cp -r "$repo/python/npquant" "$site/"
cp "$build"/_C.cpython-311-aarch64-linux-gnu.so "$site/npquant/"

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(test_kernel_oracle_small.py test_dispatch.py test_bad_input.py
    test_linear_exact.py::test_edge_tiles_every_kernel
    test_linear_exact.py::test_threads_give_identical_results
    test_linear_exact.py::test_concurrent_python_threads
    test_conv.py::test_every_path_bit_exact_with_reference
    test_conv.py::test_dispatch_under_npquant_isa
    test_conv.py::test_packed_weights_reused_across_input_sizes
    test_conv.py::test_largest_reduction_is_exact
    test_conv.py::test_threads_give_identical_results)
fi
# Random conv configurations per ISA (1000 natively); the native aarch64 tests
# (run_qemu.sh) check the ARM conv kernels on their full edge grid.
export NPQUANT_TEST_CONV_CONFIGS="${NPQUANT_TEST_CONV_CONFIGS:-150}"

status=0
for model in max:neoni8mm neoverse-n1:neondot cortex-a57:neon; do
  cpu="${model%%:*}" isa="${model##*:}"
  qemu=(qemu-aarch64 -cpu "$cpu" -L "$root")
  echo "=== arm64 Python under qemu-aarch64 -cpu $cpu (expect $isa)"
  chosen="$(PYTHONPATH="$site" "${qemu[@]}" "$py" -c \
    "import npquant; from npquant import _C; i = npquant.cpu_info(); k = _C.conv_kernels()
print(i['isa'], i['kernels']['gemm']['name'], 'conv:', k['igemm'], k['dwconv'])")"
  echo "chosen ISA: $chosen"
  [ "${chosen%% *}" = "$isa" ] || { echo "FAIL: expected $isa"; status=1; }
  if ! (cd "$repo/tests" && PYTHONPATH="$site" NPQUANT_TEST_LAUNCHER="${qemu[*]}" \
      "${qemu[@]}" "$py" -m pytest -q -p no:cacheprovider "${tests[@]}"); then
    status=1
  fi
done
exit $status
