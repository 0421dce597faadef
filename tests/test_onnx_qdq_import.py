"""npquant.onnx.load of QDQ models: npquant's own QDQ export, ONNX Runtime's
quantize_static output, and the errors (PyTorch's exporter: test_qat_acceptance.py).

What a loaded model computes (docs/onnx.md, "Import of quantized models"): each
DQ -> Conv / Gemm / MatMul -> Q unit becomes npquant's quantized layer with the file's
int8 weight codes and qparams, adding an int32 bias as that integer; other units run
on the codes or in float between DeQuantize and Quantize. ONNX Runtime's fused
uint8 x int8 kernels compute the same integers where they are exact
(peers.ORT_U8S8_EXACT); its QuantizeLinear divides by the scale where npquant
multiplies by the reciprocal, so the exact comparisons feed inputs on the
quantization grid, where both give the same code.
"""

import copy

import numpy as np
import pytest

import npquant
from npquant import nn
from npquant.nn import quantized as nnq
from npquant.onnx import UnsupportedOnnxError
from npquant.onnx._qdq_load import exact_bias

import onnx_models as om
import peers

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
ortq = pytest.importorskip("onnxruntime.quantization")

LEVELS = {
    "disable_all": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "enable_all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
GEMM_TYPES = (nnq.Linear, nnq.Conv2d)


def run_ort(path, x, level):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = LEVELS[level]
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def quantized_children(model):
    return [m for _, m in model.named_modules() if isinstance(m, GEMM_TYPES)]


def float_gemm_children(model):
    return [m for _, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]


# ------------------------------------------------------------------ npquant's own export
class ConvNet(nn.Module):
    """Conv + BN + ReLU, a residual add, max pool, flatten, Linear + ReLU, Linear."""

    def __init__(self, rng):
        super().__init__()
        self.quant = nn.QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.ff = nn.FloatFunctional()
        self.pool = nn.MaxPool2d(2)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8 * 4 * 4, 16)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(16, 5)
        self.dequant = nn.DeQuantStub()
        for _, p in self.named_parameters():
            p[...] = rng.standard_normal(p.shape).astype(np.float32) * 0.3
        self.bn.running_mean[...] = rng.standard_normal(8) * 0.1
        self.bn.running_var[...] = rng.uniform(0.5, 2, 8)

    def forward(self, x):
        x = self.relu(self.bn(self.conv(self.quant(x))))
        x = self.flat(self.pool(self.ff.add(x, self.conv2(x))))
        return self.dequant(self.fc2(self.relu2(self.fc(x))))


def quantized_convnet(rng):
    batches = [rng.normal(0, 1, (4, 3, 8, 8)).astype(np.float32) for _ in range(2)]
    return om.calibrated(ConvNet(rng), batches, fuse=[["conv", "bn", "relu"], ["fc", "relu2"]])


ROUND_TRIP_MODELS = {
    "mlp": (lambda rng: om.quantized_mlp(rng), (64, 24)),
    "mlp-rank3": (lambda rng: om.quantized_mlp(rng, in_shape=(8, 4, 24)), (8, 4, 24)),
    "mlp-hardswish-cat": (lambda rng: om.quantized_mlp(rng, act="hardswish", join="cat"), (64, 24)),
    "mlp-relu6-mul": (lambda rng: om.quantized_mlp(rng, act="relu6", join="mul"), (64, 24)),
    "pools-bn": (lambda rng: om.quantized_poolnet(rng, hw=14), (16, 3, 14, 14)),
    "convnet": (quantized_convnet, (16, 3, 8, 8)),
}


@pytest.mark.parametrize("weight_dtype", ["uint8", "int8"])
@pytest.mark.parametrize("name", list(ROUND_TRIP_MODELS))
def test_npquant_qdq_export_loads_back_bit_identical(name, weight_dtype, rng, tmp_path):
    """export(format="qdq") -> load: quantized layers with the same int8 codes and qparams,
    and the same outputs bit for bit (the float biases come back from the metadata)."""
    build, shape = ROUND_TRIP_MODELS[name]
    q = build(rng)
    x = rng.normal(0, 1.5, shape).astype(np.float32)
    npquant.onnx.export(q, x, tmp_path / "m.onnx", weight_dtype=weight_dtype)
    back = npquant.onnx.load(tmp_path / "m.onnx")
    assert not float_gemm_children(back)
    mine, theirs = quantized_children(q), quantized_children(back)
    assert len(mine) == len(theirs) > 0
    for a, b in zip(mine, theirs):
        assert type(a) is type(b)
        assert np.array_equal(a.weight().int_repr(), b.weight().int_repr())
        assert np.array_equal(a._packed_params.w_scale, b._packed_params.w_scale)
        assert (np.float32(a.scale), a.zero_point) == (np.float32(b.scale), b.zero_point)
        assert (a.bias() is None) == (b.bias() is None)
        if a.bias() is not None:
            assert np.array_equal(a.bias(), b.bias())
    assert np.array_equal(back(x), q(x))


def test_int32_bias_without_metadata_is_added_as_that_integer(rng, tmp_path):
    """Another producer's QDQ file has only the int32 bias: npquant's requantization adds
    that integer (bias_s == bq, or the float32 next to it where no float32 bias divides
    to it exactly), as ORT's fused kernels do."""
    q = quantized_convnet(rng)
    x = rng.normal(0, 1.5, (16, 3, 8, 8)).astype(np.float32)
    proto = npquant.onnx.export(q, x, tmp_path / "m.onnx")
    assert any(p.key.startswith("npquant.float_bias:") for p in proto.metadata_props)
    del proto.metadata_props[:]
    back = npquant.onnx.load(proto)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    layers = dict(zip(["conv", "conv2", "fc", "fc2"], quantized_children(back)))
    exact = total = 0
    for name, m in layers.items():
        bq, s = inits[f"{name}_bias"], inits[f"{name}_bias_scale"]
        quotient = (m.bias() / s).astype(np.float32)
        assert np.all(np.abs(quotient - bq) <= np.spacing(np.abs(bq).astype(np.float32))), name
        exact += int(np.count_nonzero(quotient == bq))
        total += bq.size
    assert exact >= total * 3 // 4
    out, ref = back(x), q(x)
    diff = int(np.count_nonzero(out != ref))
    peers.record("QDQ load without float biases (outputs differing)", "measured", diff)
    # rounding b / s to an integer moves a layer's result only near a rounding tie; the
    # model's outputs move by a step or two where such a change propagates (measured: 8 of 80)
    assert np.abs(out.astype(np.float64) - ref).max() <= 2.01 * layers["fc2"].scale


def test_exact_bias_gives_the_integer():
    rng = np.random.default_rng(0)
    s = rng.uniform(1e-6, 1e-2, 4096).astype(np.float32)
    bq = (rng.integers(-(2**24), 2**24, 4096) >> rng.integers(0, 24, 4096)).astype(np.int32)
    quotient = (exact_bias(bq, s) / s).astype(np.float32)
    # the integer itself, or (no float32 divides to it) the float32 next to it
    assert np.all(np.abs(quotient - bq) <= np.spacing(np.abs(bq).astype(np.float32)))
    peers.record(
        "exact_bias: quotient == the int32 bias", "measured", int(np.count_nonzero(quotient == bq.astype(np.float32)))
    )


# ------------------------------------------------------------------ ONNX Runtime's quantize_static
class PlainNet(nn.Module):
    """Conv + ReLU, max pool, Conv + ReLU, flatten, Gemm: units ORT computes in integers
    (QLinearConv / QGemm) plus ops on the codes."""

    def __init__(self, rng, c=16):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(c * 64, 10)
        for _, p in self.named_parameters():
            p[...] = rng.standard_normal(p.shape).astype(np.float32) * 0.3

    def forward(self, x):
        x = self.pool(self.relu(self.conv(x)))
        return self.fc(self.flat(self.relu2(self.conv2(x))))


class ResNetLike(PlainNet):
    """PlainNet plus a residual Add, a depthwise conv, global average pooling, Gemm + ReLU."""

    def __init__(self, rng, c=16):
        super().__init__(rng, c)
        self.ff = nn.FloatFunctional()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, 32)
        self.fc2 = nn.Linear(32, 10)
        for name, p in self.named_parameters():
            if name.split(".")[0] in ("dw", "fc", "fc2"):
                p[...] = rng.standard_normal(p.shape).astype(np.float32) * 0.3

    def forward(self, x):
        x = self.pool(self.relu(self.conv(x)))
        x = self.ff.add(x, self.conv2(x))
        x = self.relu2(self.dw(x))
        return self.fc2(self.relu(self.fc(self.flat(self.gap(x)))))


def ort_quantized(model, rng, path, activation, per_channel):
    """model exported as float ONNX, then quantize_static (QDQ) calibrated on random data."""
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    npquant.onnx.export(model, x, path.with_suffix(".float.onnx"))
    batches = iter([{"input": rng.standard_normal((8, 3, 16, 16)).astype(np.float32)} for _ in range(3)])

    class Reader(ortq.CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    ortq.quantize_static(
        str(path.with_suffix(".float.onnx")),
        str(path),
        Reader(),
        quant_format=ortq.QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=getattr(ortq.QuantType, activation),
        weight_type=ortq.QuantType.QInt8,
    )
    return onnx.load(str(path))


def input_qparams(proto):
    """(scale, zero point) of the QuantizeLinear on the graph input."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    q = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
    return np.float32(inits[q.input[1]]), int(inits[q.input[2]])


def on_grid(rng, proto, shape):
    """Inputs at the centres of the input quantization's steps: ORT's x / s and npquant's
    x * fl(1 / s) give the same code there (no rounding tie nearby)."""
    s, zp = input_qparams(proto)
    lo, hi = (-128, 127) if input_dtype(proto) == np.int8 else (0, 255)
    q = rng.integers(lo, hi + 1, shape)
    return ((q - zp) * np.float64(s)).astype(np.float32)


def output_scale(proto):
    """The scale of the last DequantizeLinear of an activation (the model's output)."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] not in inits][-1]
    return float(inits[dq.input[1]])


def input_dtype(proto):
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    q = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
    return inits[q.input[2]].dtype


def check_weights_kept(proto, model):
    """Every Conv / Gemm became a quantized layer holding the file's int8 codes and scales."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    files = sorted((v.shape, v.tobytes()) for k, v in inits.items() if k.endswith("_quantized") and v.dtype == np.int8)
    mine = quantized_children(model)
    assert not float_gemm_children(model)
    held = sorted((m.weight().int_repr().shape, m.weight().int_repr().tobytes()) for m in mine)
    assert files == held


@pytest.mark.parametrize("per_channel", [True, False], ids=["per_channel", "per_tensor"])
@pytest.mark.parametrize("activation", ["QUInt8", "QInt8"])
def test_ort_quantize_static_plain_model_exact(activation, per_channel, rng, tmp_path):
    """Conv / Gemm units and ops on the codes: npquant's loaded model gives ORT's outputs
    bit for bit at ORT_ENABLE_ALL (fused integer kernels) where ORT's uint8 x int8 kernels
    are exact; elsewhere ORT saturates (peers.py) and only the float path (DISABLE_ALL)
    is compared, within a step."""
    proto = ort_quantized(PlainNet(rng), rng, tmp_path / "m.onnx", activation, per_channel)
    model = npquant.onnx.load(proto)
    check_weights_kept(proto, model)
    x = on_grid(rng, proto, (32, 3, 16, 16))
    y = model(x)
    out_scale = output_scale(proto)
    if peers.ORT_U8S8_EXACT and activation == "QUInt8":
        assert np.array_equal(run_ort(tmp_path / "m.onnx", x, "enable_all"), y)
        peers.record("ORT quantize_static -> load (outputs)", peers.EXACT, y.size)
    else:
        peers.record("ORT quantize_static -> load (outputs)", "within 1 step", y.size)
    ref = run_ort(tmp_path / "m.onnx", x, "disable_all")
    assert np.abs(ref.astype(np.float64) - y).max() <= 1.01 * out_scale


@pytest.mark.parametrize("per_channel", [True, False], ids=["per_channel", "per_tensor"])
@pytest.mark.parametrize("activation", ["QUInt8", "QInt8"])
def test_ort_quantize_static_resnet_like_within_steps(activation, per_channel, rng, tmp_path):
    """A residual Add (QFunctional.add), depthwise conv, and a global average pool whose
    output has its own qparams (so it runs in float between DeQuantize and Quantize):
    the arithmetic differs from ORT's QLinearAdd / QLinearGlobalAveragePool only in
    rounding, measured: up to 1 step on a few outputs."""
    proto = ort_quantized(ResNetLike(rng), rng, tmp_path / "m.onnx", activation, per_channel)
    model = npquant.onnx.load(proto)
    check_weights_kept(proto, model)
    assert any(isinstance(m, nnq.QFunctional) for _, m in model.named_modules())
    x = rng.normal(0, 1.5, (32, 3, 16, 16)).astype(np.float32)
    y = model(x)
    out_scale = output_scale(proto)
    levels = ["disable_all", "enable_all"] if peers.ORT_U8S8_EXACT else ["disable_all"]
    for level in levels:
        ref = run_ort(tmp_path / "m.onnx", x, level)
        steps = np.rint(np.abs(ref.astype(np.float64) - y) / out_scale)
        peers.record(
            f"ORT quantize_static ResNet-like, {level} (outputs differing)", "measured", int(np.count_nonzero(steps))
        )
        assert steps.max() <= 2 and np.count_nonzero(steps) <= y.size // 50


def test_int8_activations_become_quint8_shifted_by_128(rng, tmp_path):
    proto = ort_quantized(PlainNet(rng), rng, tmp_path / "m.onnx", "QInt8", True)
    s, zp = input_qparams(proto)
    model = npquant.onnx.load(proto)
    quant = next(m for _, m in model.named_modules() if isinstance(m, nnq.Quantize))
    assert (np.float32(quant.scale), quant.zero_point, quant.dtype) == (s, zp + 128, npquant.quint8)


# ------------------------------------------------------------------ errors
ZERO_U8 = np.uint8(0)


def qdq_graph(weight, w_zp, y_zp=ZERO_U8, per_axis_activation=False, float_output=True):
    """x -> Q -> DQ -> MatMul(DQ(weight)) -> Q -> (DQ) -> y, hand-written."""
    from onnx import TensorProto, helper, numpy_helper

    xs = np.full(4, 0.1, np.float32) if per_axis_activation else np.float32(0.1)
    xz = np.zeros(4, np.uint8) if per_axis_activation else np.uint8(128)
    inits = {"xs": xs, "xz": xz, "w": weight, "ws": np.float32(0.01), "wz": w_zp, "ys": np.float32(0.05), "yz": y_zp}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="quant_x", axis=1),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_x", axis=1),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="dq_w"),
        helper.make_node("MatMul", ["xd", "wd"], ["m"], name="matmul"),
        helper.make_node("QuantizeLinear", ["m", "ys", "yz"], ["yq"], name="quant_y"),
    ]
    out = "yq"
    if float_output:
        nodes.append(helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"], name="dq_y"))
        out = "y"
    out_type = TensorProto.FLOAT if float_output else TensorProto.UINT8
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info(out, out_type, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_handwritten_qdq_matmul_loads_as_quantized_linear():
    w = np.arange(-8, 8, dtype=np.int8).reshape(4, 4)
    m = npquant.onnx.load(qdq_graph(w, np.int8(0)))
    lin = [c for _, c in m.named_modules() if isinstance(c, nnq.Linear)]
    assert len(lin) == 1 and np.array_equal(lin[0].weight().int_repr(), w.T)
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    assert m(x).dtype == np.float32 and m(x).shape == (2, 4)


def test_qdq_errors_name_the_node_and_what_to_do():
    w = np.arange(16, dtype=np.uint8).reshape(4, 4)
    with pytest.raises(UnsupportedOnnxError, match="matmul.*symmetric int8 weights.*QInt8"):
        npquant.onnx.load(qdq_graph(w, np.uint8(3)))
    w8 = np.arange(-8, 8, dtype=np.int8).reshape(4, 4)
    with pytest.raises(UnsupportedOnnxError, match="symmetric"):
        npquant.onnx.load(qdq_graph(w8, np.int8(1)))
    with pytest.raises(UnsupportedOnnxError, match="quant_x.*per-axis"):
        npquant.onnx.load(qdq_graph(w8, np.int8(0), per_axis_activation=True))
    with pytest.raises(UnsupportedOnnxError, match="graph output 'yq' is quantized.*DequantizeLinear"):
        npquant.onnx.load(qdq_graph(w8, np.int8(0), float_output=False))
    with pytest.raises(UnsupportedOnnxError, match="int16"):
        npquant.onnx.load(qdq_graph(w8, np.int8(0), y_zp=np.int16(0)))


def test_loaded_qdq_model_saves_and_deepcopies(rng, tmp_path):
    q = quantized_convnet(rng)
    x = rng.normal(0, 1, (4, 3, 8, 8)).astype(np.float32)
    npquant.onnx.export(q, x, tmp_path / "m.onnx")
    back = npquant.onnx.load(tmp_path / "m.onnx")
    assert np.array_equal(copy.deepcopy(back)(x), q(x))


def test_ort_quantize_static_matmul_with_separate_bias_add(rng, tmp_path):
    """Rank-3 inputs export as MatMul + Add(bias); quantize_static quantizes the MatMul's
    output before the Add, whose bias is a quantized constant: quantized Linear layers
    without bias, then the Add in float between DeQuantize and Quantize (ConstantOp)."""
    from npquant.onnx._modules import ConstantOp

    model = om.MLP(rng).eval()
    x = rng.standard_normal((8, 4, 24)).astype(np.float32)
    npquant.onnx.export(model, x, tmp_path / "f.onnx")
    batches = iter([{"input": rng.standard_normal((8, 4, 24)).astype(np.float32)} for _ in range(3)])

    class Reader(ortq.CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    ortq.quantize_static(
        str(tmp_path / "f.onnx"),
        str(tmp_path / "q.onnx"),
        Reader(),
        quant_format=ortq.QuantFormat.QDQ,
        per_channel=True,
    )
    proto = onnx.load(str(tmp_path / "q.onnx"))
    q = npquant.onnx.load(proto)
    assert len(quantized_children(q)) == 4 and not float_gemm_children(q)
    assert sum(isinstance(m, ConstantOp) for _, m in q.named_modules()) >= 3
    y = q(x)
    # ORT's fused uint8 x int8 kernels (ENABLE_ALL) saturate on CPUs without VNNI (peers.py):
    # 238 of 320 outputs differ there (qemu Haswell); only its float path is compared then
    levels = list(LEVELS) if peers.ORT_U8S8_EXACT else ["disable_all"]
    for level in levels:
        ref = run_ort(tmp_path / "q.onnx", x, level)
        steps = np.rint(np.abs(ref.astype(np.float64) - y) / output_scale(proto))
        peers.record(
            f"ORT quantize_static MatMul + Add, {level} (outputs differing)", "measured", int(np.count_nonzero(steps))
        )
        assert steps.max() <= 1
