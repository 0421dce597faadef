"""bench/models.py's pieces without torchvision: structure and correctness, no timing."""

import importlib.util
import pathlib

import numpy as np
import pytest

import npquant

spec = importlib.util.spec_from_file_location(
    "bench_models", pathlib.Path(__file__).resolve().parents[1] / "bench" / "models.py"
)
M = importlib.util.module_from_spec(spec)
spec.loader.exec_module(M)


def tiny_onnx():
    """Conv -> Relu -> Conv -> Add(skip) -> Relu -> GlobalAveragePool -> Flatten -> Gemm, with
    an Identity on a shared weight as torch.onnx.export writes it."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = lambda *s: numpy_helper.from_array(rng.normal(0, 0.3, s).astype(np.float32))  # noqa: E731
    inits = {"w1": w(4, 3, 3, 3), "w2": w(4, 4, 3, 3), "fw": w(5, 4), "fb": w(5)}
    tensors = []
    for k, t in inits.items():
        t.name = k
        tensors.append(t)
    nodes = [
        helper.make_node("Identity", ["w2"], ["w2b"]),
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Conv", ["b", "w2b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "b"], ["d"]),
        helper.make_node("Relu", ["d"], ["e"]),
        helper.make_node("GlobalAveragePool", ["e"], ["f"]),
        helper.make_node("Flatten", ["f"], ["g"]),
        helper.make_node("Gemm", ["g", "fw", "fb"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        tensors,
    )
    return onnx, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_fuse_plan_and_quantize_a_tiny_graph():
    onnx, proto = tiny_onnx()
    net = npquant.onnx.load(M.fold_constant_identities(proto))
    pairs, add_relu = M.fuse_plan(net)
    assert len(pairs) == 1 and len(add_relu) == 1  # conv1+relu; the Add before the second Relu
    rng = np.random.default_rng(1)
    batches = [rng.normal(0, 1, (4, 3, 8, 8)).astype(np.float32) for _ in range(3)]
    q = M.quantize_npquant(net, batches)
    kinds = {type(m).__name__ for _, m in q.named_modules()}
    assert "ConvReLU2d" in kinds and "AdaptiveAvgPool2d" in kinds
    assert any(st.method == "add_relu" for st in q.steps)
    x = batches[0]
    assert M.rel_error(q(x), net(x)) < 0.1


def test_table_and_metrics():
    ref = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert M.top1_agreement(ref, ref) == 1.0 and M.rel_error(ref, ref) == 0.0
    rows = [
        {
            "model": "m",
            "batch": 1,
            "threads": 1,
            "agree": {"npquant int8": 1.0},
            "err": {"npquant int8": 0.01},
            "ms": {"torch int8": (2.0, 2.5), "ORT int8": (4.0, 4.0), "npquant int8": (1.0, 1.5)},
        }
    ]
    t = M.table(rows, [1], [1])
    assert "| m | 1 | 1 |" in t and "0.50" in t and "1.0 / 1.5" in t and "100%" in t
    assert len(M.calibration_batches()) == M.CALIB_BATCHES
    assert M.time_ms(lambda: None, 3, warmup=0)[0] >= 0


def test_peer_isas_says_which_peer_saturates():
    vnni = {"avx2", "avx512_vnni"}
    both = M.peer_isas({}, vnni, "AVX512")
    assert both.count("VNNI, exact") == 3 and "saturating" not in both
    capped = M.peer_isas({"ONEDNN_MAX_CPU_ISA": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "avx2"}, vnni, "AVX2")
    assert "oneDNN capped at AVX2 (vpmaddubsw, saturating int16)" in capped
    assert "FBGEMM capped at AVX2 (vpmaddubsw, saturating int16)" in capped
    assert capped.endswith("(VNNI, exact)")  # ORT is not capped
    one = M.peer_isas({"DNNL_MAX_CPU_ISA": "avx2"}, vnni, "AVX512")
    assert "oneDNN capped at AVX2 (vpmaddubsw" in one and "FBGEMM best ISA (VNNI, exact)" in one
    avx2_only = M.peer_isas({}, {"avx2", "fma"}, "AVX2")
    assert avx2_only.count("saturating int16") == 3
