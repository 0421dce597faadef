"""npquant.bench (npquant bench, bench/compare.py): its cases, correctness checks and
report (no timing assertions)."""

import importlib.util
import os
import pathlib
import sys

import numpy as np
import pytest

import npquant.bench as compare
from npquant.bench import peers as bench_peers
from npquant.bench import report as bench_report

import npref
import peers

FAST = dict(repeat=1, warmup=0, min_sample=0.0, progress=False)


def _installed(module):
    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(not _installed("torch"), reason="PyTorch not installed")
@pytest.mark.parametrize(
    "shape", [(2, 6, 9, 7, 4, 3, 1, 1), (1, 8, 10, 10, 8, 3, 2, 8), (1, 6, 5, 5, 9, 1, 1, 3), (3, 4, 7, 6, 4, 5, 3, 2)]
)
def test_conv_reference_matches_torch(shape):
    import torch

    case = compare.make_conv_case(shape, seed=1)
    y = torch.nn.functional.conv2d(
        torch.from_numpy(case.x),
        torch.from_numpy(case.w),
        torch.from_numpy(case.b),
        stride=case.stride,
        padding=case.pad,
        groups=case.groups,
    ).numpy()
    np.testing.assert_allclose(case.y_ref, y, rtol=1e-4, atol=1e-4)


def test_qparams_and_weights_roundtrip():
    x = np.array([-1.0, 0.5, 3.0], np.float32)
    qp = compare.QParams.of(x)
    assert qp.scale == pytest.approx(4.0 / 255) and qp.zero_point == 64
    w = np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)
    pc = compare.PerChannel.of(w)
    assert pc.q.dtype == np.int8
    np.testing.assert_allclose(pc.q * pc.scales[:, None], w, atol=pc.scales.max())


def _families_here():
    fams = {"numpy", "npquant"}
    if _installed("torch"):
        fams.add("torch")
    if _installed("onnxruntime") and _installed("onnx"):
        fams.add("ort")
    return fams


def test_every_linear_impl_agrees_with_fp32():
    """Each installed implementation computes the layer it is timed on (checked before timing);
    the missing ones are skipped with a note naming what is missing."""
    case = compare.make_linear_case(5, 40, 24, seed=2)
    [row] = compare.bench_cases([case], compare.linear_impls(), **FAST)
    for impl in compare.linear_impls():
        if impl.family in _families_here():
            assert impl.name in row.gmacs, row.notes.get(impl.name)
            assert row.error[impl.name] <= compare.TOLERANCE[impl.kind]
        else:
            assert "not installed" in row.notes[impl.name]


def test_every_conv_impl_agrees_with_fp32():
    case = compare.make_conv_case((1, 8, 9, 9, 8, 3, 1, 1), seed=3)
    [row] = compare.bench_cases([case], compare.conv_impls(), **FAST)
    for impl in compare.conv_impls():
        if impl.family in _families_here():
            assert impl.name in row.gmacs, row.notes.get(impl.name)


@pytest.mark.skipif(not _installed("torch"), reason="PyTorch not installed")
@pytest.mark.parametrize("mode", [peers.TORCH_LINEAR_MODE])
def test_static_linear_same_work_as_torch(mode):
    """npquant and PyTorch static Linear get the same qparams: identical u8 outputs where
    torch is exact on this CPU; where it saturates, torch's are its saturating arithmetic's
    and npquant's the exact contract's."""
    case = compare.make_linear_case(7, 33, 20, seed=4)
    npq_run, _ = bench_peers._npquant_static_linear(case)
    torch_run, _ = bench_peers._torch_static_linear(case)
    ours = npq_run().int_repr()
    args = (case.xq.scale, case.wq.scales, case.b, case.yq.scale, case.yq.zero_point, False)
    np.testing.assert_array_equal(
        ours, peers.requantize(npref.acc_int(case.x_u8, case.xq.zero_point, case.wq.q), *args)
    )
    if mode == peers.SATURATING:
        ours = peers.requantize(peers.fbgemm_pairs_acc(case.x_u8, case.xq.zero_point, case.wq.q), *args)
    np.testing.assert_array_equal(ours, torch_run().int_repr().numpy())
    peers.record("bench: torch static Linear", mode)


def test_wrong_result_is_reported_not_timed():
    def transposed(case):  # a broken "peer": right shape, wrong values
        y = (case.x @ case.w.T).T.copy()
        return (lambda: y.T[::-1]), (lambda v: v)

    bad = compare.Impl("broken", "dynamic", "test", transposed)
    case = compare.make_linear_case(6, 16, 6)
    [row] = compare.bench_cases([case], [bad], **FAST)
    assert "broken" not in row.gmacs and "wrong result" in row.notes["broken"]


def test_missing_or_failing_peer_is_a_note():
    def missing(case):
        bench_peers._import("no_such_module_npq", "NoSuchPeer")

    def crashing(case):
        raise RuntimeError("boom")

    impls = [compare.Impl("missing", "fp32", "x", missing), compare.Impl("crashing", "fp32", "x", crashing)]
    [row] = compare.bench_cases([compare.make_linear_case(2, 8, 4)], impls, **FAST)
    assert "NoSuchPeer is not installed" in row.notes["missing"]
    assert "boom" in row.notes["crashing"] and not row.gmacs


def test_markdown_ratios():
    impls = compare.linear_impls()
    row = compare.Row(
        "8,8,8",
        512,
        gmacs={
            "NumPy fp32": 10.0,
            "npquant dyn": 30.0,
            "PyTorch dyn": 12.0,
            "ORT dyn": 15.0,
            "npquant static": 8.0,
            "PyTorch static": 16.0,
        },
        notes={"ORT QLinearMatMul": "ONNX Runtime is not installed (onnxruntime)"},
    )
    row.gmacs["npquant dyn [avx2]"] = 5.0
    impls = bench_report._with_isa_columns(impls, [row])
    table = compare.markdown_table([row], impls, "M,K,N", {"avx512vnni": 100.0, "avx2": 50.0}, "avx512vnni")
    cells = [c.strip() for c in table.splitlines()[2].strip("|").split("|")]
    head = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    got = dict(zip(head, cells))
    assert got["dyn / best peer"] == "2.00x" and got["dyn / NumPy fp32"] == "3.00x"
    assert got["static / best peer"] == "0.50x" and got["dyn % peak"] == "30%"
    assert got["ORT QLinearMatMul"] == "—" and got["dyn [avx2] % peak"] == "10%"
    assert "ONNX Runtime is not installed" in table


def test_shape_arguments():
    args = compare.parse_args(["--linear-shapes", "1,2,3;4,5,6", "--quick"])
    assert args.linear_shapes == [(1, 2, 3), (4, 5, 6)] and args.repeat == 3
    with pytest.raises(SystemExit):
        compare.parse_args(["--linear-shapes", "1,2"])


def test_isa_columns_from_subprocess(tmp_path, capsys):
    """--isa re-runs npquant under NPQUANT_ISA in a child and adds its columns."""
    out = tmp_path / "r.json"
    assert (
        compare.main(
            [
                "--only",
                "npquant",
                "--no-conv",
                "--linear-shapes",
                "3,16,8",
                "--repeat",
                "1",
                "--warmup",
                "0",
                "--min-sample",
                "0",
                "--isa",
                "scalar",
                "--no-peak",
                "--no-progress",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    import json

    [row] = json.loads(out.read_text())["linear"]
    assert {"npquant dyn [scalar]", "npquant static [scalar]"} <= set(row["gmacs"])
    assert "| 3,16,8 |" in capsys.readouterr().out


def test_measure_peak_reads_probe_labels(tmp_path):
    """The peaks come from npquant_bench's JSON: probes labelled 'peak of <isa>' only."""
    import json

    bench = [
        {"name": "probe/avx512vnni/vpdpbusd_zmm/threads:1/real_time", "label": "peak of avx512vnni", "GMAC/s": 230.0},
        {
            "name": "probe/avx512vnni/vpdpbusd_ymm_evex/threads:1/real_time",
            "label": "peak of avxvnni (stand-in)",
            "GMAC/s": 229.0,
        },
        {"name": "probe/avx2/fma_f32_ymm/threads:1/real_time", "label": "reference", "GMAC/s": 58.0},
    ]
    fake = tmp_path / "npquant_bench"
    fake.write_text(f"#!{sys.executable}\nprint({json.dumps(json.dumps({'benchmarks': bench}))})\n")
    fake.chmod(0o755)
    assert compare.measure_peak(fake, threads=1) == {"avx512vnni": (230.0, "vpdpbusd_zmm")}


def _checkout_bench_binary():
    """NPQUANT_BENCH_BIN, or the newest npquant_bench built in this checkout (tests/run.sh
    builds build/native-tests/bench/npquant_bench)."""
    if os.environ.get(compare.BENCH_BIN_ENV):
        return compare.find_bench_binary()
    repo = pathlib.Path(__file__).resolve().parents[1]
    found = sorted(repo.glob("build/*/bench/npquant_bench"), key=lambda p: p.stat().st_mtime)
    return compare.find_bench_binary(found[-1]) if found else None


def test_find_bench_binary_explicit_env_path(tmp_path, monkeypatch):
    """An explicit path wins, then NPQUANT_BENCH_BIN, then PATH; the working directory (a
    checkout with a built bench) is never searched."""
    fake = tmp_path / "build" / "x" / "bench" / "npquant_bench"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench_gemm.cc").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(compare.BENCH_BIN_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert compare.find_bench_binary() is None
    assert compare.find_bench_binary(fake) == fake
    assert compare.find_bench_binary(tmp_path / "missing") is None
    monkeypatch.setenv(compare.BENCH_BIN_ENV, str(fake))
    assert compare.find_bench_binary() == fake
    monkeypatch.setenv(compare.BENCH_BIN_ENV, "")
    monkeypatch.setenv("PATH", str(fake.parent))
    assert compare.find_bench_binary() == fake


def test_native_probe_peaks():
    binary = _checkout_bench_binary()
    if binary is None:
        pytest.skip("native bench not built (cmake -DNPQUANT_BUILD_BENCH=ON)")
    import npquant

    peaks = compare.measure_peak(binary, threads=1)
    feats = npquant.cpu_info()["features"]
    if "avx2" in feats:
        assert peaks["avx2"][0] > 0
    if "avx512_vnni" in feats:
        assert peaks["avx512vnni"][1] == "vpdpbusd_zmm"


@pytest.mark.skipif(not _installed("matplotlib"), reason="matplotlib not installed")
def test_plot_writes_png(tmp_path):
    case = compare.make_linear_case(2, 8, 4)
    rows = compare.bench_cases([case], compare.linear_impls()[:2], **FAST)
    result = {"meta": {"npquant_isa": "x", "threads": 1}, "linear": [r.__dict__ for r in rows], "conv": []}
    compare.plot(result, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("clock,stat", [("wall", "median"), ("cpu", "min")])
def test_time_interleaved_clocks(clock, stat):
    calls = []
    runners = {"a": compare.LocalRunner(lambda: calls.append("a")), "b": compare.LocalRunner(lambda: calls.append("b"))}
    times = compare.time_interleaved(runners, repeat=4, warmup=1, min_sample=0.0, clock=clock, stat=stat)
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
    # warmup + calibration, then 4 rounds alternating which one goes first
    assert calls[4:] == ["a", "b", "b", "a", "a", "b", "b", "a"]


def test_elementwise_section_checks_and_reports():
    """The elementwise table: npquant's native and NumPy paths agree exactly (else the row
    says so instead of a time), and the report has a row per case."""
    cases = [
        ("add_relu", (1, 5, 4, 3), (1, 5, 4, 3)),
        ("mul", (2, 6, 3, 3), (2, 6, 1, 1)),
        ("cat", (1, 4, 3, 3), (1, 4, 3, 3)),
    ]
    rows = compare.bench_elementwise(cases, repeat=1, warmup=0, min_sample=0.0)
    assert [r.case.split()[0] for r in rows] == ["add_relu", "mul", "cat"]
    for r in rows:
        assert {"npquant", "npquant NumPy path"} <= set(r.ms), r.notes
        if _installed("torch"):
            assert "PyTorch" in r.ms, r.notes
    table = compare.elementwise_table(rows)
    assert len(table.splitlines()) == 2 + len(cases) and "PyTorch / npquant" in table
