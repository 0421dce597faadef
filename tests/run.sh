#!/usr/bin/env bash
# npquant's whole test suite: installs the package with its test extras, then
# runs pytest (all ISAs this CPU has, PyTorch/ONNX Runtime agreement) and the
# native C++ tests (every ukernel against the reference).
# Usage: bash tests/run.sh        (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

echo "== install npquant with test extras"
$PY -m pip install --quiet ".[test]"

echo "== pytest"
# Run from tests/ so the installed package (not the source tree) is imported.
(cd tests && $PY -m pytest -q -p no:cacheprovider .)

echo "== native tests (ctest)"
cmake -S . -B build/native-tests -DNPQUANT_BUILD_PYTHON=OFF -DNPQUANT_BUILD_TESTS=ON >/dev/null
cmake --build build/native-tests -j2
ctest --test-dir build/native-tests --output-on-failure
