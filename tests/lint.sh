#!/usr/bin/env bash
# Lint, format and type checks (tests/run.sh and .ci/run run them; .ci/run installs the
# tools: ruff, mypy, clang-format). Configuration: pyproject.toml ([tool.ruff],
# [tool.mypy]), .clang-format and .clang-format-ignore.
# Usage: bash tests/lint.sh        (from anywhere; needs npquant installed for the stub check)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

missing=()
for tool in ruff mypy clang_format; do
  $PY -c "import $tool" 2>/dev/null || missing+=("${tool/_/-}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "${CI:-}" = true ]; then
    echo "lint needs: pip install ${missing[*]}" >&2
    exit 1
  fi
  echo "SKIPPED lint: pip install ${missing[*]}"
  exit 0
fi

echo "-- ruff check"
$PY -m ruff check --no-cache .
echo "-- ruff format --check"
$PY -m ruff format --check --no-cache .
echo "-- mypy (strict for the modules pyproject.toml lists)"
$PY -m mypy
echo "-- the extension's stub: current, and matching the runtime module"
$PY tools/gen_c_pyi.py --check
(cd tests && $PY -m mypy.stubtest npquant._C --allowlist ../tools/stubtest-allowlist.txt)
echo "-- clang-format (files in .clang-format-ignore are skipped)"
# The pip package's entry point, run through $PY (its script may not be on PATH). The
# tracked C++ files, or (in an export without .git) every C++ file outside build/.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  cpp_files=$(git ls-files '*.cc' '*.h')
else
  cpp_files=$(find . -path ./build -prune -o \( -name '*.cc' -o -name '*.h' \) -print)
fi
# shellcheck disable=SC2086  # one file name per word
$PY -c 'import sys; from clang_format import clang_format; sys.exit(clang_format())' \
  --dry-run --Werror $cpp_files
echo "lint: all checks passed"
