"""npquant.onnx with convolutions: QDQ Conv export run in ONNX Runtime, Conv import.

Until the conv branch is merged, npquant has no Conv2d; these tests then run on a
NumPy stand-in with the same interface (the PyTorch-style constructor,
set_weight_bias, weight(), bias(), scale, zero_point) computing the numerics
contract exactly, to check the exporter's and importer's Conv paths. With the real
modules present, the stand-in is not used and the same tests check them.
"""

import numpy as np
import pytest

import npquant
import npquant.nn as nn
import npquant.nn.quantized as nnq
import npref

import onnx_models as om
from test_onnx import (FORMATS, HASWELL, LEVELS, assert_exact, check_model, layer_inputs, optimized_ops,
                       run_ort)

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

REAL_CONV = hasattr(nn, "Conv2d") and hasattr(nnq, "Conv2d")


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _conv_int(x, w, stride, padding, dilation, groups, dtype):
    """Grouped 2-D correlation of (N, C, H, W) x with (O, C/g, kh, kw) w, in dtype."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x.astype(dtype), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, oh, ow), dtype)
    og = o // groups
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            for g in range(groups):
                out[:, g * og:(g + 1) * og] += np.einsum(
                    "nchw,oc->nohw", patch[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og, :, i, j].astype(dtype))
    return out


class StandinConv2d(nn.Module):
    """Float Conv2d (NCHW), torch's constructor and parameter names."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, rng=None):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding, self.dilation = (_pair(kernel_size), _pair(stride),
                                                                      _pair(padding), _pair(dilation))
        rng = np.random.default_rng(0) if rng is None else rng
        bound = 1 / np.sqrt(in_channels // groups * self.kernel_size[0] * self.kernel_size[1])
        self.register_parameter("weight", rng.uniform(-bound, bound, (out_channels, in_channels // groups)
                                                      + self.kernel_size).astype(np.float32))
        self.register_parameter("bias", rng.uniform(-bound, bound, out_channels).astype(np.float32) if bias else None)

    def forward(self, x):
        y = _conv_int(x, self.weight, self.stride, self.padding, self.dilation, self.groups, np.float64)
        if self.bias is not None:
            y += self.bias.reshape(1, -1, 1, 1)
        return y.astype(np.float32)


class StandinQConv2d(nn.Module):
    """Quantized Conv2d computing the static contract exactly (npref's requantization)."""

    _RELU = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding, self.dilation = (_pair(kernel_size), _pair(stride),
                                                                      _pair(padding), _pair(dilation))
        self.scale, self.zero_point = 1.0, 0

    def set_weight_bias(self, w, b):
        self._w, self._b = w, None if b is None else np.asarray(b, np.float32)

    def weight(self):
        return self._w

    def bias(self):
        return self._b

    def forward(self, x):
        acc = _conv_int(x.int_repr().astype(np.int64) - x.q_zero_point(), self._w.int_repr(), self.stride,
                        self.padding, self.dilation, self.groups, np.int64)
        n, o, oh, ow = acc.shape
        flat = acc.transpose(0, 2, 3, 1).reshape(-1, o)
        bias_s, mult = npref.requant_constants(np.float32(x.q_scale()), self._w.q_per_channel_scales(),
                                               np.float32(self.scale), self._b)
        v = ((flat.astype(np.float32) + bias_s).astype(np.float32) * mult).astype(np.float32)
        q = np.clip(np.rint(v) + self.zero_point, self.zero_point if self._RELU else 0, 255).astype(np.uint8)
        return npquant.QTensor(np.ascontiguousarray(q.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)),
                               self.scale, self.zero_point)


class StandinQConvReLU2d(StandinQConv2d):
    _RELU = True


@pytest.fixture
def conv_modules(monkeypatch):
    """npquant's Conv2d modules, or the stand-ins when they are not merged yet."""
    if not REAL_CONV:
        monkeypatch.setattr(nn, "Conv2d", StandinConv2d, raising=False)
        monkeypatch.setattr(nnq, "Conv2d", StandinQConv2d, raising=False)
        monkeypatch.setattr(nnq, "ConvReLU2d", StandinQConvReLU2d, raising=False)
    return nn.Conv2d


class CNN(nn.Module):
    def __init__(self, Conv2d, rng):
        super().__init__()
        self.quant, self.dequant = nn.QuantStub(), nn.DeQuantStub()
        self.conv1, self.relu1 = Conv2d(3, 12, 3, padding=1, rng=rng), nn.ReLU()
        self.dw, self.relu2 = Conv2d(12, 12, 3, stride=2, padding=1, groups=12, rng=rng), nn.ReLU()
        self.pw = Conv2d(12, 16, 1, rng=rng)
        self.conv3 = Conv2d(16, 16, 3, padding=2, dilation=2, bias=False, rng=rng)
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


def _quantized_cnn(Conv2d, rng):
    kw = {} if REAL_CONV else {"rng": rng}

    class C(CNN):
        def __init__(self):
            super().__init__(lambda *a, rng=None, **k: Conv2d(*a, **k, **kw), rng)

    return om.calibrated(C(), [rng.normal(0, 1, (4, 3, 14, 14)).astype(np.float32) for _ in range(2)])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("seed", [pytest.param(0, marks=HASWELL), 1, 2])
def test_conv_layers_alone(conv_modules, fmt, seed, tmp_path):
    """Each layer of the CNN alone, at both ends of ORT's optimization levels: equal to
    npquant (integer), within one step (qdq; QLinearConv with uint8 weights is exact in its
    accumulator on every CPU, so only rounding near ties differs)."""
    rng = np.random.default_rng(seed)
    q = _quantized_cnn(conv_modules, rng)
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
def test_quantized_cnn_in_onnxruntime(conv_modules, seed, tmp_path):
    rng = np.random.default_rng(seed)
    q = _quantized_cnn(conv_modules, rng)
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
def test_quantized_cnn_integer_exact(conv_modules, seed, tmp_path):
    rng = np.random.default_rng(seed)
    q = _quantized_cnn(conv_modules, rng)
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
def test_nhwc_model_qdq(conv_modules, seed, tmp_path):
    """QDQ through the NHWC model: every layer within one step (test_every_quantized_layer_alone
    has the reasons), but mul(x, x) and the pools amplify a step of their input; measured
    up to 5 output steps over 10 seeds on VNNI and AVX2-only CPUs alike."""
    rng = np.random.default_rng(seed)
    q = om.calibrated(NhwcZoo(rng), [rng.normal(0, 1, (4, 3, 15, 15)).astype(np.float32) for _ in range(2)],
                      fuse=[["conv2", "relu"]])
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
def test_nhwc_model_integer_exact(conv_modules, seed, tmp_path):
    rng = np.random.default_rng(seed)
    q = om.calibrated(NhwcZoo(rng), [rng.normal(0, 1, (4, 3, 15, 15)).astype(np.float32) for _ in range(2)],
                      fuse=[["conv2", "relu"]])
    x = rng.normal(0, 1, (5, 3, 15, 15)).astype(np.float32)
    assert q.pool(q.hs(q.bn(q.conv1(q.quant(x))))).is_nhwc
    check_model(q, x, q.fc.scale, tmp_path, fmt="integer")
    for name, layer, xq in layer_inputs(q, x):
        npquant.onnx.export(layer, xq, tmp_path / "layer.onnx", format="integer")
        for level in LEVELS:
            assert_exact(run_ort(str(tmp_path / "layer.onnx"), xq, level=level), layer(xq), name)


def test_load_torch_cnn(conv_modules, rng, tmp_path):
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
        torch.onnx.export(t, (torch.randn(1, 3, 16, 16),), buf, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "N"}})
    net = npquant.onnx.load(buf.getvalue())
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 2
    x = rng.normal(0, 1, (3, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(net(x), t(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    # quantized with the eager workflow, exported bit-exact
    q = om.calibrated(net, [rng.normal(0, 1, (4, 3, 16, 16)).astype(np.float32) for _ in range(2)])
    assert sum(isinstance(m, nnq.Conv2d) for m in q.modules()) == 2
    check_model(q, x, 1.0, tmp_path, fmt="integer")
