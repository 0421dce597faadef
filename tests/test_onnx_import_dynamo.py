"""npquant.onnx.load of what torch.onnx.export(dynamo=True) writes: the graph patterns
alone (handwritten graphs against ONNX Runtime, no torch needed), then torchvision's
quantizable architectures exported by it against torch.

The dynamo exporter (torch 2.13, onnxscript 0.7) writes opset 20 and, with its default
optimize=True, a folded graph: Conv with BatchNormalization folded in, constants as
initializers, Reshape with allowzero=1, Split with num_outputs. With optimize=False the
graph keeps Constant nodes (value_ints, value_float), BatchNormalization, each Conv's
zero bias as Expand(CastLike(0, x), Shape(w)[0:1]) and chunk as SplitToSequence +
SequenceAt. docs/onnx.md (Import) has the table.
"""

from __future__ import annotations

import numpy as np
import pytest

import npquant
import npquant.onnx
from npquant.onnx import UnsupportedOnnxError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import helper  # noqa: E402

import onnx_models  # noqa: E402


def make_onnx(nodes, inits, in_shape, opset=20):
    """onnx_models.make_onnx at the dynamo exporter's opset 20 (IR version 9)."""
    return onnx_models.make_onnx(nodes, inits, in_shape, opset, ir_version=9)


def run_ort(model, x):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def agrees_with_ort(model, rng, shapes) -> None:
    net = npquant.onnx.load(model)
    for shape in shapes:
        x = rng.normal(0, 1, shape).astype(np.float32)
        ref = run_ort(model, x)
        y = net(x)
        assert y.shape == ref.shape
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [4, "N"])
def test_reshape_allowzero_without_zeros(rng, batch):
    """allowzero=1 (the dynamo exporter's Reshape) means what allowzero=0 means when the
    target has no 0; with a dynamic batch the exporter writes -1 there."""
    nodes = [
        helper.make_node("Reshape", ["x", "s1"], ["a"], allowzero=1),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Reshape", ["b", "s2"], ["y"], allowzero=1),
    ]
    inits = {"s1": np.array([-1, 2, 3, 20], np.int64), "s2": np.array([-1, 120], np.int64)}
    agrees_with_ort(make_onnx(nodes, inits, [batch, 6, 4, 5]), rng, [(4, 6, 4, 5)] + [(1, 6, 4, 5)] * (batch == "N"))


def test_reshape_allowzero_with_a_zero_raises():
    """A 0 under allowzero=1 is an empty dimension, not a copy: refused, naming the node."""
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"], name="rs", allowzero=1)]
    model = make_onnx(nodes, {"s": np.array([0, 4], np.int64)}, [0, 8])
    with pytest.raises(UnsupportedOnnxError, match="Reshape node 'rs': allowzero=1 with a 0"):
        npquant.onnx.load(model)


def test_unoptimized_conv_bias_and_constant_nodes_fold(rng):
    """optimize=False's Conv bias: Expand(CastLike(Constant(value_float), x), Shape(w, end=1)),
    and Constant(value_ints) shapes whose values the shape probes need downstream (the Split
    after the Reshape needs the size of axis 1); both fold, and the BatchNormalization
    stays a module."""
    w = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    bn = [rng.normal(0, 0.2, 8).astype(np.float32) + d for d in (1, 0, 0)] + [rng.uniform(0.5, 1.5, 8)]
    nodes = [
        helper.make_node("Shape", ["w"], ["w_out"], start=0, end=1),
        helper.make_node("Constant", [], ["zero"], value_float=0.0),
        helper.make_node("CastLike", ["zero", "x"], ["zero_x"]),
        helper.make_node("Expand", ["zero_x", "w_out"], ["bias"]),
        helper.make_node("Conv", ["x", "w", "bias"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["d"]),
        helper.make_node("Constant", [], ["target"], value_ints=[0, 16, -1]),
        helper.make_node("Reshape", ["d", "target"], ["e"]),
        helper.make_node("Split", ["e"], ["e0", "e1"], axis=1, num_outputs=2),
        helper.make_node("Add", ["e0", "e1"], ["y"]),
    ]
    inits = {"w": w, "g": bn[0], "b": bn[1], "m": bn[2], "v": bn[3].astype(np.float32)}
    model = make_onnx(nodes, inits, ["N", 3, 6, 6])
    agrees_with_ort(model, rng, [(2, 3, 6, 6), (3, 3, 6, 6)])
    net = npquant.onnx.load(model)
    assert [type(m).__name__ for _, m in net.named_children()].count("Conv2d") == 1
    assert np.array_equal(net.c.bias, np.zeros(8, np.float32))


@pytest.mark.parametrize(
    "split,positions,sizes",
    [
        (np.int64(4), [0, 1, -1], [4, 4, 2]),  # chunk: parts of 4, the last one smaller
        (np.array([3, 7], np.int64), [1, 0], [7, 3]),
        (None, [9, 0, -10], [1, 1, 1]),  # parts of 1, keepdims=1
    ],
)
def test_split_to_sequence(rng, split, positions, sizes):
    """torch's chunk / split as the unoptimized dynamo graph writes them: each SequenceAt of
    a SplitToSequence with constant positions is a Slice of the activation."""
    inits = {f"p{i}": np.int64(p) for i, p in enumerate(positions)}
    ins = ["x"] if split is None else ["x", "split"]
    if split is not None:
        inits["split"] = split
    nodes = [helper.make_node("SplitToSequence", ins, ["seq"], axis=1)]
    nodes += [helper.make_node("SequenceAt", ["seq", f"p{i}"], [f"s{i}"]) for i in range(len(positions))]
    nodes.append(helper.make_node("Concat", [f"s{i}" for i in range(len(positions))], ["y"], axis=1))
    model = make_onnx(nodes, inits, ["N", 10, 3])
    net = npquant.onnx.load(model)
    assert [m.end - m.start for _, m in net.named_children() if type(m).__name__ == "Slice"] == sizes
    agrees_with_ort(model, rng, [(2, 10, 3), (1, 10, 3)])


def test_split_to_sequence_errors_name_the_node():
    cases = [
        (helper.make_node("SplitToSequence", ["x"], ["seq"], name="sts", axis=1, keepdims=0), {}, "keepdims=0"),
        (
            helper.make_node("SplitToSequence", ["x", "split"], ["seq"], name="sts", axis=1),
            {"split": np.array([3, 3], np.int64)},
            "do not cover the axis",
        ),
    ]
    for node, inits, pattern in cases:
        nodes = [node, helper.make_node("SequenceAt", ["seq", "p"], ["y"], name="at")]
        model = make_onnx(nodes, dict(inits, p=np.int64(0)), [2, 10])
        with pytest.raises(UnsupportedOnnxError, match=f"SplitToSequence node 'sts': .*{pattern}"):
            npquant.onnx.load(model)
    nodes = [
        helper.make_node("SplitToSequence", ["x"], ["seq"], axis=1),
        helper.make_node("SequenceAt", ["seq", "p"], ["y"], name="at"),
    ]
    with pytest.raises(UnsupportedOnnxError, match="SequenceAt node 'at': position 10 is outside the 10 parts"):
        npquant.onnx.load(make_onnx(nodes, {"p": np.int64(10)}, [2, 10]))


# ---- torchvision's architectures, exported by torch and imported
# CI runs a subset: the dynamo exporter takes 2-9 s per model on a 2-core machine
# (torch.export and its decompositions, whatever the image size), over a minute for the
# seven architectures in both batch modes. The subset has each graph pattern of the seven:
# residual Add, Gemm, flatten Reshape, HardSwish / HardSigmoid and the SE block's broadcast
# Mul (mobilenet_v3_large); Split / Transpose / channel-shuffle Reshapes (shufflenet_v2);
# Concat of branches and ceil-mode MaxPool (googlenet, with transform_input=True as its
# pretrained weights set it: Gather / Unsqueeze of the input); a dynamic batch, the harder
# case (static batches: test_onnx_import_vision.py's small models). The TorchScript exporter
# for the same three (2-3 s each on a quiet machine, 6-12 s at a load of 5: all marked slow).
# bench/onnx_vision_import.py runs all seven, both exporters, both batch modes (the table
# in docs/onnx.md).
TORCHVISION_CASES = [
    pytest.param(
        name,
        exporter,
        dynamic,
        kwargs,
        marks=pytest.mark.slow,
        id=f"{name}{'-transform_input' if kwargs else ''}-{exporter}-{'dynamic' if dynamic else 'static'}",
    )
    for name, exporter, dynamic, kwargs in [
        ("mobilenet_v3_large", "dynamo", True, {}),
        ("shufflenet_v2_x1_0", "dynamo", True, {}),
        ("googlenet", "dynamo", True, {"transform_input": True}),
        ("mobilenet_v3_large", "torchscript", True, {}),
        ("shufflenet_v2_x1_0", "torchscript", True, {}),
        ("googlenet", "torchscript", True, {"transform_input": True}),
    ]
]


@pytest.fixture(scope="module")
def torchvision():
    pytest.importorskip("torch")
    import vision_peer

    try:
        return vision_peer.import_torchvision()
    except ImportError as e:
        pytest.skip(f"needs torchvision: {e}")


@pytest.mark.parametrize("name,exporter,dynamic,kwargs", TORCHVISION_CASES)
def test_torchvision_model_imports_matches_torch_and_quantizes(torchvision, name, exporter, dynamic, kwargs):
    """torchvision's float model exported by torch.onnx.export, loaded: fp32 within 1e-5 of
    torch (relative to the largest logit; batches 2, 1 and 3 when the batch is dynamic),
    and prepare / calibrate / convert quantizes every convolution, with int8 logits that
    follow fp32 (vision_peer.onnx_route)."""
    import vision_peer

    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    r = vision_peer.onnx_route(name, exporter, dynamic, **kwargs)
    print(
        f"{name} {kwargs or ''} {exporter} {'dynamic' if dynamic else 'static'} ({r['size']}x{r['size']}): export "
        f"{r['export_s']:.1f} s, load {r['load_s']:.1f} s; fp32 rel {r['fp32_rel']:.1e} (batches "
        f"{r['batches']}); int8: {r['quantized_convs']} quantized convs, SQNR {r['sqnr_int8']:.1f} dB"
    )
    assert r["fp32_rel"] < 1e-5
    assert r["quantized_convs"] >= 20 and r["float_convs"] == 0
    assert r["sqnr_int8"] > 15 and r["int8_shapes_ok"]
