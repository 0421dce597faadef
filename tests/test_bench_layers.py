"""bench/layers.py's name matching without torch or ONNX Runtime (no timing)."""

import importlib.util
import pathlib
import sys

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))  # layers.py imports bench/models.py as `models`
spec = importlib.util.spec_from_file_location("bench_layers", BENCH / "layers.py")
L = importlib.util.module_from_spec(spec)
spec.loader.exec_module(L)


def test_scope_name_follows_torch_export_scopes():
    assert L.scope_name("/layer1/layer1.0/conv1/Conv_token_11") == "layer1.0.conv1"
    assert L.scope_name("/layer4/layer4.0/downsample/downsample.0/Conv_token_144") == "layer4.0.downsample.0"
    assert L.scope_name("/features/features.2/conv/conv.0/conv.0.0/Conv_token_10") == "features.2.conv.0.0"
    assert L.scope_name("/inception3b/branch2/branch2.1/conv/Conv_token_74") == "inception3b.branch2.1.conv"
    assert L.scope_name("/conv1/Conv_token_1") == "conv1"
    assert L.scope_name("/fc/Gemm") == "fc"
    assert L.scope_name("Transpose") is None
    assert L.scope_name("x_QuantizeLinear") is None


def test_ort_node_times_takes_the_median_after_warmup():
    ev = [{"cat": "Node", "name": "/fc/Gemm_kernel_time", "dur": d} for d in (900, 10, 30, 20)]
    ev += [{"cat": "Node", "name": "/fc/Gemm_fence_before", "dur": 5}, {"cat": "Session", "name": "x", "dur": 1}]
    assert L.ort_node_times(ev, warmup=1) == {"/fc/Gemm": 20}


def test_match_pairs_layers_and_sums_the_rest():
    rows = [
        ("conv1", "ConvReLU2d", 1.0),
        ("layer1.0.conv1", "ConvReLU2d", 2.0),
        ("layer1.0.skip_add_relu", "QFunctional", 0.5),
        ("other (Python between modules)", "", 0.25),
        ("fc", "Linear", 0.125),
    ]
    ort_us = {
        "/conv1/Conv_token_1": 3000.0,
        "/layer1/layer1.0/conv1/Conv_token_8": 1000.0,
        "/layer1/layer1.0/Add": 400.0,  # an add: between layers, not layer1.0's
        "Transpose": 100.0,
        "/fc/Gemm": 250.0,
    }
    pairs, npq_between, ort_between = L.match(rows, ort_us)
    assert pairs == [
        ("conv1", "ConvReLU2d", 1.0, 3.0),
        ("layer1.0.conv1", "ConvReLU2d", 2.0, 1.0),
        ("fc", "Linear", 0.125, 0.25),
    ]
    assert npq_between == 0.75
    assert abs(ort_between - 0.5) < 1e-12
    text = L.report(pairs, npq_between, ort_between, top=2)
    assert "| layer1.0.conv1 | ConvReLU2d | 2.000 | 1.000 | 2.00 |" in text  # the worst first
    assert "first layer (conv1): npquant 1.000 ms, ORT 3.000 ms (0.33)" in text
    assert "sum: npquant 3.875 ms, ORT 4.750 ms (0.82)" in text
