"""CPU detection, NPQUANT_ISA and cpu_info."""

import json

import pytest

import npquant

from conftest import run_python, runnable_isas

ALL_TOKENS = ["scalar", "avx2", "avxvnni", "avx512vnni", "amx", "neon", "neondot", "neoni8mm"]


def test_cpu_info_shape():
    info = npquant.cpu_info()
    assert info["isa"] in ALL_TOKENS
    assert set(info["built_isas"]) <= set(ALL_TOKENS)
    assert "scalar" in info["runnable_isas"]
    assert info["isa"] == info["runnable_isas"][-1] or "NPQUANT_ISA" in __import__("os").environ
    assert info["kernels"]["gemm"]["isa"] == info["isa"]
    assert info["num_threads"] >= 1


@pytest.mark.parametrize("isa", runnable_isas())
def test_forced_isa_is_used(isa):
    r = run_python("import json, npquant; print(json.dumps(npquant.cpu_info()))", {"NPQUANT_ISA": isa})
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["isa"] == isa
    assert info["kernels"]["gemm"]["isa"] == isa


def test_unknown_isa_is_a_clear_error():
    r = run_python("import npquant", {"NPQUANT_ISA": "avx1024"})
    assert r.returncode != 0
    assert "NPQUANT_ISA='avx1024' is not an ISA name" in r.stderr
    assert "scalar" in r.stderr


def test_unsupported_isa_is_a_clear_error():
    missing = [t for t in ALL_TOKENS if t not in runnable_isas()]
    assert missing  # no CPU runs both x86 and ARM kernels
    r = run_python("import npquant", {"NPQUANT_ISA": missing[0]})
    assert r.returncode != 0
    assert f"NPQUANT_ISA={missing[0]} cannot run here" in r.stderr
    assert "unset it" in r.stderr


def test_set_num_threads_validation():
    old = npquant.get_num_threads()
    try:
        npquant.set_num_threads(1)
        assert npquant.get_num_threads() == 1
        with pytest.raises(ValueError, match=">= 1"):
            npquant.set_num_threads(0)
        with pytest.raises(TypeError):
            npquant.set_num_threads(1.5)
    finally:
        npquant.set_num_threads(old)


def test_num_threads_from_environment():
    r = run_python("import npquant; print(npquant.get_num_threads())", {"NPQUANT_NUM_THREADS": "3"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "3"
    for bad in ("0", "-2", "two", "1.5"):
        r = run_python("import npquant", {"NPQUANT_NUM_THREADS": bad})
        assert r.returncode != 0
        assert f"NPQUANT_NUM_THREADS={bad!r} is not a positive integer" in r.stderr, r.stderr
