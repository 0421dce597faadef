#!/usr/bin/env bash
# The AVX2-only world on any x86-64 machine: runs the peer-agreement tests (PyTorch,
# ONNX Runtime) and npquant's avx2 exactness checks on the installed npquant, the
# same Python and the same torch / onnxruntime wheels, under qemu-x86_64 -cpu Haswell
# (AVX2 + FMA, no AVX-512, no VNNI). There PyTorch's FBGEMM and ONNX Runtime's MLAS
# take their saturating vpmaddubsw kernels, exactly as on a real AVX2-only CPU such as
# AMD Zen 3, so the tests' 'saturating' mode (tests/peers.py) runs on every machine.
#
# Needs qemu-user (Debian: apt-get install qemu-user; .ci/run installs it) and npquant
# installed in ${PYTHON:-python3} (tests/run.sh does that first). About 7-10 minutes.
# Usage: tests/x86/run_qemu.sh [pytest args...]   (default: the subset below)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# qemu runs an ELF file, not pyenv's shell shims: the interpreter's own path (a venv's
# bin/python symlink keeps the venv).
py="$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')"
# Haswell minus the features qemu's TCG cannot give (it warns about each, and they do
# not matter here).
cpu="Haswell,-pcid,-x2apic,-tsc-deadline,-hle,-invpcid,-rtm"
launcher="qemu-x86_64 -cpu $cpu"

if ! command -v qemu-x86_64 >/dev/null; then
  echo "run_qemu.sh: needs qemu-x86_64: apt-get install qemu-user" >&2
  exit 1
fi

echo "== the emulated CPU is AVX2-only for npquant, PyTorch and ONNX Runtime"
$launcher "$py" - <<'EOF'
import npquant, torch
info = npquant.cpu_info()
feats = set(info["features"])
print(f"npquant: isa {info['isa']}, features {sorted(feats)}; torch: {torch.backends.cpu.get_cpu_capability()}")
assert info["isa"] == "avx2" and "avx2" in feats and not any(f.startswith("avx512") or "vnni" in f for f in feats), info
assert torch.backends.cpu.get_cpu_capability() == "AVX2"
EOF

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(
    # PyTorch: quantize, static Linear (exact vs saturating emulation), dynamic Linear,
    # the non-GEMM ops, converted models, convolutions.
    test_torch_agreement_linear.py test_torch_agreement_random.py
    "test_workflow.py::test_mlp_matches_torch" "test_workflow.py::test_resnet_matches_torch"
    "test_bench_compare.py::test_static_linear_same_work_as_torch"
    "test_conv.py::test_reference_within_one_step_of_pytorch"
    "test_conv.py::test_quantized_module_matches_pytorch"
    "test_state_dict.py::test_torch_converted_model_loads_and_agrees"
    # torchvision's models: every FBGEMM conv path saturating, SE blocks, channel shuffle,
    # torch's float mean (about 2 minutes of this step; all seven pass here too, in 9).
    "test_models_torchvision.py::test_model_agrees_with_torchvision[shufflenet_v2_x1_0]"
    "test_models_torchvision.py::test_model_agrees_with_torchvision[mobilenet_v3_large]"
    # ONNX Runtime: npquant's exports (uint8 weights: exact integer format, QDQ within
    # a step) where MLAS's u8 x s8 kernels saturate (docs/onnx.md).
    test_onnx.py test_onnx_conv.py
    # npquant's own kernels on this CPU against the contract and the reference.
    test_kernel_oracle_small.py
    # the AVX2 Winograd 3x3 conv (and the scalar one) against the reference (~25 s).
    test_conv_winograd.py
  )
fi

# qemu 7.2 (Debian 12's qemu-user) loads the whole vector of a vmaskmovps / vpmaskmovd,
# masked-out lanes included, so a masked tail load that ends within 28 bytes of an
# unmapped page faults where a real CPU does not (a 7-line C program with
# _mm256_maskload_ps and a PROT_NONE page shows it). NumPy, PyTorch, ONNX Runtime and
# npquant's float kernels all load tails that way, so the step used to die now and then
# with SIGSEGV in whichever of them read the last bytes of a fresh mmap. glibc's malloc
# then serves every allocation from one brk heap with a mapped top pad, so no array ends
# at the edge of a mapping.
export GLIBC_TUNABLES="glibc.malloc.mmap_max=0:glibc.malloc.arena_max=1:glibc.malloc.top_pad=16777216"

cd "$repo/tests"
# Children (tests that start an interpreter) run under qemu too: there is no binfmt_misc.
NPQUANT_TEST_LAUNCHER="$launcher" $launcher "$py" -m pytest -q -p no:cacheprovider "${tests[@]}"
