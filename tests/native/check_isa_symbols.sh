#!/usr/bin/env bash
# Every object of one ISA's ukernel library exports only functions whose name
# carries that ISA (`__<isa>`, e.g. qu8_gemm_4x8c4__avx2_requant), and nothing weak.
# A helper with external linkage (a non-static function, an inline function or
# template instantiated out of line) compiled with this ISA's flags could be merged
# by the linker with a copy from another ISA or the baseline and run where the CPU
# lacks the ISA; helpers belong in headers with internal linkage (docs/dispatch.md).
# Run by ctest (tests/native/CMakeLists.txt): check_isa_symbols.sh NM ISA OBJECT...
set -euo pipefail
nm_tool=$1 isa=$2
shift 2
# ctest passes CMake's object list as one ;-separated argument.
IFS=';' read -ra objs <<< "$*"
status=0 checked=0
for obj in "${objs[@]}"; do
  # Global defined symbols: "<address> <type> <name>" (demangled).
  while read -r _ type name; do
    # DW.ref.__gxx_personality_v0: the weak, hidden pointer to the C++ unwinding
    # personality that objects with unwind tables carry (e.g. under ASan); data, no code.
    [[ $name == DW.ref.* ]] && continue
    checked=$((checked + 1))
    if [[ $type == [VvWw] ]]; then
      echo "FAIL $(basename "$obj"): weak symbol $name (an inline function or template with external linkage)"
      status=1
    elif [[ $name != *"__${isa}"* ]]; then
      echo "FAIL $(basename "$obj"): exports $name, which is not a __${isa} kernel"
      status=1
    fi
  done < <("$nm_tool" -C --defined-only --extern-only "$obj")
done
if [ "$checked" -eq 0 ]; then
  echo "FAIL: no exported symbols in the $isa objects (nothing checked)"
  exit 1
fi
echo "$isa: ${#objs[@]} objects, $checked exported symbols, all __${isa} kernels"
exit $status
