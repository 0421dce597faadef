"""npquant.onnx with convolutions: QDQ Conv export run in ONNX Runtime, Conv import."""

import numpy as np
import pytest

import npquant
import npquant.nn as nn
import npquant.nn.quantized as nnq
from test_onnx import FORMATS, HASWELL, LEVELS, assert_exact, check_model, layer_inputs, optimized_ops, run_ort

import onnx_models as om

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


class CNN(nn.Module):
    def __init__(self, rng):
        super().__init__()
        self.quant, self.dequant = nn.QuantStub(), nn.DeQuantStub()
        # The convs take their default initialization (rng: the Linear's weights only).
        self.conv1, self.relu1 = nn.Conv2d(3, 12, 3, padding=1), nn.ReLU()
        self.dw, self.relu2 = nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=12), nn.ReLU()
        self.pw = nn.Conv2d(12, 16, 1)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=2, dilation=2, bias=False)
        self.skip = nn.FloatFunctional()
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 10, rng=rng)

    def forward(self, x):
        x = self.relu1(self.conv1(self.quant(x)))
        x = self.relu2(self.dw(x))
        x = self.pw(x)
        x = self.skip.add(x, self.conv3(x))
        return self.dequant(self.fc(self.flatten(self.gap(self.pool(x)))))


def _quantized_cnn(rng):
    return om.calibrated(CNN(rng), [rng.normal(0, 1, (4, 3, 14, 14)).astype(np.float32) for _ in range(2)])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("seed", [pytest.param(0, marks=HASWELL), 1, 2])
def test_conv_layers_alone(fmt, seed, tmp_path):
    """Each layer of the CNN alone, at both ends of ORT's optimization levels: equal to
    npquant (integer), within one step (qdq; QLinearConv with uint8 weights is exact in its
    accumulator on every CPU, so only rounding near ties differs)."""
    rng = np.random.default_rng(seed)
    q = _quantized_cnn(rng)
    x = rng.normal(0, 1, (3, 3, 14, 14)).astype(np.float32)
    n_conv = 0
    for name, layer, xq in layer_inputs(q, x):
        expect = layer(xq)
        if not isinstance(expect, npquant.QTensor):
            continue
        npquant.onnx.export(layer, xq, tmp_path / f"{name}.onnx", format=fmt)
        n_conv += isinstance(layer, nnq.Conv2d)
        for level in LEVELS:
            got = run_ort(str(tmp_path / f"{name}.onnx"), xq, level=level)
            if fmt == "integer":
                assert_exact(got, expect, name)
            d = np.abs(got.astype(int) - expect.int_repr().astype(int))
            assert d.max() <= 1, (name, level, d.max())
            if isinstance(layer, nnq.Conv2d):
                assert np.mean(d) < 0.01, (name, level, np.mean(d))
    assert n_conv == 4


@pytest.mark.parametrize("seed", [pytest.param(0, marks=HASWELL), 1, 2])
def test_quantized_cnn_in_onnxruntime(seed, tmp_path):
    rng = np.random.default_rng(seed)
    q = _quantized_cnn(rng)
    x = rng.normal(0, 1, (5, 3, 14, 14)).astype(np.float32)
    proto = npquant.onnx.export(q, x[:1], tmp_path / "cnn.onnx")
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Conv") == 4
    dq_w = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0].endswith("_weight")]
    assert len(dq_w) == 5 and all(a.i == 0 for n in dq_w for a in n.attribute if a.name == "axis")
    # ORT fuses the uint8-weight units into its integer kernels
    opt = optimized_ops(tmp_path / "cnn.onnx", tmp_path, LEVELS[-1])
    assert opt.count("QLinearConv") == 4 and opt.count("QGemm") == 1 and "Conv" not in opt, opt
    check_model(q, x, q.fc.scale, tmp_path, max_steps=2, max_frac=1.0)  # measured: 1 over 10 seeds


@pytest.mark.parametrize("seed", [pytest.param(0, marks=HASWELL), 1, 2])
def test_quantized_cnn_integer_exact(seed, tmp_path):
    rng = np.random.default_rng(seed)
    q = _quantized_cnn(rng)
    x = rng.normal(0, 1, (5, 3, 14, 14)).astype(np.float32)
    proto = npquant.onnx.export(q, x[:1], tmp_path / "cnn.onnx", format="integer")
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("ConvInteger") == 4 and ops.count("MatMulInteger") == 1
    check_model(q, x, q.fc.scale, tmp_path, fmt="integer")
    opt = optimized_ops(tmp_path / "cnn.onnx", tmp_path, LEVELS[-1])
    assert opt.count("ConvInteger") == 4 and opt.count("MatMulInteger") == 1, opt


class NhwcZoo(nn.Module):
    """Quantized ops on conv outputs (stored NHWC, where npquant's pooling and cat round
    as PyTorch's channels-last kernels): BatchNorm, Hardswish, ceil-mode average pooling
    without the padding in the count (20 channels: PyTorch's vector and scalar channel
    loops round differently), cat along channels, mul, unequal adaptive bins."""

    def __init__(self, rng):
        super().__init__()
        self.quant, self.dequant = nn.QuantStub(), nn.DeQuantStub()
        self.conv1, self.bn, self.hs = nn.Conv2d(3, 20, 3, padding="same", rng=rng), nn.BatchNorm2d(20), nn.Hardswish()
        self.bn.running_mean = rng.normal(0, 0.3, 20).astype(np.float32)
        self.bn.running_var = rng.uniform(0.5, 2, 20).astype(np.float32)
        self.pool = nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)
        self.conv2, self.relu = nn.Conv2d(20, 4, 1, rng=rng), nn.ReLU()
        self.cat, self.mul = nn.FloatFunctional(), nn.FloatFunctional()
        self.gap = nn.AdaptiveAvgPool2d((3, 2))
        self.flatten, self.fc = nn.Flatten(), nn.Linear(24 * 3 * 2, 5, rng=rng)

    def forward(self, x):
        x = self.pool(self.hs(self.bn(self.conv1(self.quant(x)))))
        x = self.cat.cat([x, self.relu(self.conv2(x))], 1)
        x = self.mul.mul(x, x)
        return self.dequant(self.fc(self.flatten(self.gap(x))))


@pytest.mark.parametrize("seed", [pytest.param(0, marks=HASWELL), 1, 2])
def test_nhwc_model_qdq(seed, tmp_path):
    """QDQ through the NHWC model: every layer within one step (test_every_quantized_layer_alone
    has the reasons), but mul(x, x) and the pools amplify a step of their input; measured
    up to 5 output steps over 10 seeds on VNNI and AVX2-only CPUs alike."""
    rng = np.random.default_rng(seed)
    q = om.calibrated(
        NhwcZoo(rng), [rng.normal(0, 1, (4, 3, 15, 15)).astype(np.float32) for _ in range(2)], fuse=[["conv2", "relu"]]
    )
    x = rng.normal(0, 1, (5, 3, 15, 15)).astype(np.float32)
    check_model(q, x, q.fc.scale, tmp_path, max_steps=6, max_frac=1.0)
    for name, layer, xq in layer_inputs(q, x):
        expect = layer(xq)
        if not isinstance(expect, npquant.QTensor):
            continue
        npquant.onnx.export(layer, xq, tmp_path / "layer.onnx")
        for level in LEVELS:
            got = run_ort(str(tmp_path / "layer.onnx"), xq, level=level)
            d = np.abs(got.astype(int) - expect.int_repr().astype(int))
            assert d.max() <= 1, (name, level, d.max())


@pytest.mark.parametrize("seed", [pytest.param(0, marks=HASWELL), 1, 2])
def test_nhwc_model_integer_exact(seed, tmp_path):
    rng = np.random.default_rng(seed)
    q = om.calibrated(
        NhwcZoo(rng), [rng.normal(0, 1, (4, 3, 15, 15)).astype(np.float32) for _ in range(2)], fuse=[["conv2", "relu"]]
    )
    x = rng.normal(0, 1, (5, 3, 15, 15)).astype(np.float32)
    assert q.pool(q.hs(q.bn(q.conv1(q.quant(x))))).is_nhwc
    check_model(q, x, q.fc.scale, tmp_path, fmt="integer")
    for name, layer, xq in layer_inputs(q, x):
        npquant.onnx.export(layer, xq, tmp_path / "layer.onnx", format="integer")
        for level in LEVELS:
            assert_exact(run_ort(str(tmp_path / "layer.onnx"), xq, level=level), layer(xq), name)


def test_load_torch_cnn(rng, tmp_path):
    torch = pytest.importorskip("torch")
    import io
    import warnings

    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8)
            self.dw = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
            self.pool = torch.nn.MaxPool2d(2)
            self.fc = torch.nn.Linear(8 * 4 * 4, 5)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.nn.functional.relu6(self.dw(x))
            x = self.pool(x) + self.pool(x) * 0.5
            return self.fc(torch.flatten(x, 1))

    torch.manual_seed(0)
    t = T().eval()
    with torch.no_grad():
        t.bn1.running_mean.uniform_(-0.3, 0.3)
        t.bn1.running_var.uniform_(0.5, 2)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            t, (torch.randn(1, 3, 16, 16),), buf, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "N"}}
        )
    net = npquant.onnx.load(buf.getvalue())
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 2
    x = rng.normal(0, 1, (3, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(net(x), t(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    # quantized with the eager workflow, exported bit-exact
    q = om.calibrated(net, [rng.normal(0, 1, (4, 3, 16, 16)).astype(np.float32) for _ in range(2)])
    assert sum(isinstance(m, nnq.Conv2d) for m in q.modules()) == 2
    check_model(q, x, 1.0, tmp_path, fmt="integer")


def _check_quantized_exports(q, x, op_counts, tmp_path):
    """The integer format of the whole model gives npquant's outputs bit for bit at both
    ORT levels; in QDQ each quantized layer alone, fed npquant's input codes, is within one
    step (rounding near ties), as test_conv_layers_alone asks of Conv2d."""
    for fmt in FORMATS:
        proto = npquant.onnx.export(q, x[:1], tmp_path / f"{fmt}.onnx", format=fmt)
        ops = [n.op_type for n in proto.graph.node]
        assert {op: ops.count(op) for op in op_counts[fmt]} == op_counts[fmt]
        if fmt == "integer":
            for level in LEVELS:
                assert_exact(run_ort(str(tmp_path / "integer.onnx"), x, level=level), q(x), str(level))
    layers = 0
    for name, layer, xq in layer_inputs(q, x):
        expect = layer(xq)
        if not isinstance(expect, npquant.QTensor) or isinstance(layer, (nnq.Quantize, nnq.DeQuantize)):
            continue
        npquant.onnx.export(layer, xq, tmp_path / f"{name}.onnx", format="qdq")
        for level in LEVELS:
            got = run_ort(str(tmp_path / f"{name}.onnx"), xq, level=level)
            d = np.abs(got.astype(int) - expect.int_repr().astype(int))
            assert d.max() <= 1 and np.mean(d) < 0.02, (name, level, d.max(), np.mean(d))
        layers += isinstance(layer, (nnq.Conv1d, nnq.ConvTranspose2d))
    assert layers == 3


class Net1d(nn.Module):
    """Conv1d with each attribute ONNX writes: padding (int, 'same'), stride, dilation,
    groups, no bias, and a fused ReLU."""

    def __init__(self, rng):
        super().__init__()
        self.quant, self.dequant = nn.QuantStub(), nn.DeQuantStub()
        self.c1, self.r1 = nn.Conv1d(4, 8, 3, padding=1, rng=rng), nn.ReLU()
        self.c2 = nn.Conv1d(8, 8, 5, stride=2, groups=2, rng=rng)
        self.c3 = nn.Conv1d(8, 6, 3, padding="same", dilation=2, bias=False, rng=rng)

    def forward(self, x):
        return self.dequant(self.c3(self.c2(self.r1(self.c1(self.quant(x))))))


@pytest.mark.parametrize("seed", [pytest.param(0, marks=HASWELL), 1])
def test_conv1d_exports(seed, tmp_path):
    """Float Conv1d -> Conv (1-D); quantized Conv1d / ConvReLU1d -> ConvInteger (integer:
    npquant's codes bit for bit) or Conv between Q/DQ (qdq: within one step)."""
    rng = np.random.default_rng(seed)
    model = Net1d(rng).eval()
    x = rng.normal(0, 1, (3, 4, 21)).astype(np.float32)
    npquant.onnx.export(model, x, tmp_path / "f.onnx")
    y = model(x)
    np.testing.assert_allclose(run_ort(str(tmp_path / "f.onnx"), x), y, rtol=1e-5, atol=1e-5 * np.abs(y).max())
    batches = [rng.normal(0, 1, (4, 4, 21)).astype(np.float32) for _ in range(2)]
    q = om.calibrated(Net1d(rng), batches, [["c1", "r1"]])
    assert isinstance(q.c1, nnq.ConvReLU1d) and isinstance(q.c3, nnq.Conv1d)
    _check_quantized_exports(q, x, {"integer": {"ConvInteger": 3}, "qdq": {"Conv": 3}}, tmp_path)


class NetT(nn.Module):
    """ConvTranspose2d geometries: stride 2 with output_padding, dilation, groups (per-tensor
    weights), padding beyond the kernel's reach (the integer format crops), no bias."""

    def __init__(self, rng):
        super().__init__()
        self.quant, self.dequant = nn.QuantStub(), nn.DeQuantStub()
        self.t1 = nn.ConvTranspose2d(3, 8, 3, stride=2, padding=1, output_padding=1, rng=rng)
        self.relu = nn.ReLU()
        self.t2 = nn.ConvTranspose2d(8, 6, 3, padding=(0, 1), dilation=2, groups=2, bias=False, rng=rng)
        self.t3 = nn.ConvTranspose2d(6, 4, 2, stride=(3, 2), padding=(2, 3), output_padding=(2, 1), rng=rng)

    def forward(self, x):
        return self.dequant(self.t3(self.t2(self.relu(self.t1(self.quant(x))))))


@pytest.mark.parametrize("seed", [pytest.param(0, marks=HASWELL), 1])
def test_conv_transpose2d_exports(seed, tmp_path):
    """Float ConvTranspose2d -> ConvTranspose; quantized -> ConvInteger on the spread,
    padded input with the flipped kernel (integer: npquant's codes bit for bit) or
    ConvTranspose between Q/DQ (qdq: within one step)."""
    rng = np.random.default_rng(seed)
    model = NetT(rng).eval()
    x = rng.normal(0, 1, (2, 3, 5, 6)).astype(np.float32)
    npquant.onnx.export(model, x, tmp_path / "f.onnx")
    y = model(x)
    np.testing.assert_allclose(run_ort(str(tmp_path / "f.onnx"), x), y, rtol=1e-5, atol=1e-5 * np.abs(y).max())

    model = NetT(rng).eval()
    model.qconfig = npquant.get_default_qconfig("x86")
    model.t2.qconfig = npquant.QConfig(
        activation=npquant.observers.HistogramObserver, weight=npquant.observers.default_weight_observer
    )
    prepared = npquant.prepare(model)
    for _ in range(2):
        prepared(rng.normal(0, 1, (4, 3, 5, 6)).astype(np.float32))
    q = npquant.convert(prepared)
    assert isinstance(q.t1, nnq.ConvTranspose2d) and q.t2.weight().qscheme() == "per_tensor_affine"
    _check_quantized_exports(q, x, {"integer": {"ConvInteger": 3}, "qdq": {"ConvTranspose": 3}}, tmp_path)
