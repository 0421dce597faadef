"""The patterns of torchvision's mobilenet_v3_large and shufflenet_v2 (SE block with
Hardsigmoid, channel shuffle, chunk, mean, dynamic batch) and of googlenet / inception_v3
with transform_input (what their pretrained weights turn on: x[:, i], unsqueeze, scale,
cat): QTensor shape ops against torch's quantized tensors, and npquant.onnx.load of small
torch-exported models with those patterns (no torchvision needed) and of handwritten
graphs against ONNX Runtime."""

import warnings

import numpy as np
import pytest

import npquant
from npquant.qtensor import channel_shuffle

torch = pytest.importorskip("torch")
warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated.*")


def _pair(nhwc: bool):
    x = np.random.RandomState(0).randn(2, 6, 5, 7).astype(np.float32)
    q = npquant.quantize_per_tensor(x, 0.03, 120, npquant.quint8)
    if nhwc:
        q = npquant.QTensor.from_nhwc(np.ascontiguousarray(q.nhwc()), 0.03, 120)
    return q, torch.quantize_per_tensor(torch.from_numpy(x), 0.03, 120, torch.quint8)


def _same(a, b):
    if isinstance(a, tuple):
        assert len(a) == len(b)
        return all(_same(u, v) for u, v in zip(a, b))
    assert tuple(a.shape) == tuple(b.shape)
    assert (np.float32(a.q_scale()), a.q_zero_point()) == (np.float32(b.q_scale()), b.q_zero_point())
    np.testing.assert_array_equal(a.int_repr(), b.int_repr().numpy())
    return True


@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize(
    "op",
    [
        lambda t: t.transpose(1, 2),
        lambda t: t.permute(0, 2, 3, 1),
        lambda t: t.chunk(2, 1),
        lambda t: t.chunk(4, 1),
        lambda t: t.split([1, 5], 1),
        lambda t: t.split(4, 3),
        lambda t: t.mean([2, 3]),
        lambda t: t.mean([2, 3], keepdim=True),
        lambda t: t.flatten(1),
        lambda t: t.view(2, 3, 2, 35).contiguous(),
    ],
)
def test_qtensor_shape_ops_match_torch(op, nhwc):
    q, tq = _pair(nhwc)
    _same(op(q), op(tq))


@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize("dim", [1, 3, (1, 2)])
def test_qtensor_mean_other_dims(dim, nhwc):
    """Equal to torch 2.13's quantized mean; torch 2.14 rounds a few values differently
    (2 of 70 measured), so other versions get one step."""
    q, tq = _pair(nhwc)
    a, b = q.mean(dim), tq.mean(dim)
    assert tuple(a.shape) == tuple(b.shape) and a.q_zero_point() == b.q_zero_point()
    d = np.abs(a.int_repr().astype(int) - b.int_repr().numpy().astype(int))
    assert d.max() <= (0 if torch.__version__.startswith("2.13") else 1)


@pytest.mark.parametrize("nhwc", [False, True])
def test_channel_shuffle_matches_torch(nhwc):
    q, tq = _pair(nhwc)
    n, c, h, w = tq.shape
    ref = tq.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
    _same(channel_shuffle(q, 2), ref)
    _same(channel_shuffle(q, 3), torch.nn.functional.channel_shuffle(tq, 3))
    assert channel_shuffle(q, 2).is_nhwc == nhwc  # channels-last storage is kept for the next conv


def _codes_with_half_means(rng, n, h, w, c):
    """Random NHWC uint8 codes whose mean over H x W is exactly k + 0.5 for each (image,
    channel), by moving the last code: where a float route rounds such a mean, the order
    of its float sum decides."""
    q = rng.integers(0, 256, (n, h * w, c)).astype(np.int64)
    hw = h * w
    last = q[:, -1] + (hw // 2 - q.sum(1)) % hw
    q[:, -1] = np.where(last > 255, last - hw, last)  # an integer sum of (2k + 1) * hw / 2
    assert hw % 2 == 0 and q[:, -1].min() >= 0 and np.all(q.sum(1) % hw == hw // 2)
    return q.reshape(n, h, w, c).astype(np.uint8)


@pytest.mark.parametrize("c", [3, 5, 8, 24, 40, 116, 1024])
def test_torch_mean_of_channels_last_is_its_float_route(c):
    """torch's Tensor.mean([2, 3]) of a channels-last quantized tensor (a quantized conv's
    output; torchvision's ShuffleNetV2 pools so) is not its integer kernel but dequantize,
    float sum in ATen's order, divide, quantize: peers.torch_mean_hw restates it, and this
    holds it to torch code for code: on means at exact .5 ties (where the order decides:
    of these 9,760 codes, 38-81 differ when the sum runs in vectors of 4 or 16 floats or
    all by rows, 1,833 with npquant's integer mean) and on 9,760 random ones (2-3 and 161);
    spatial sizes below and above ATen's 16-row chunks, channel counts on each of its sum
    paths, zero point 0 and not. npquant's own QTensor.mean is torch's integer kernel
    (test_qtensor_shape_ops_match_torch)."""
    import peers

    rng = np.random.default_rng(c)
    compared = 0
    for n, h, w, zp in [(2, 2, 2, 0), (1, 7, 8, 17), (3, 4, 5, 0), (2, 13, 12, 128)]:
        for q in (_codes_with_half_means(rng, n, h, w, c), rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)):
            scale = float(rng.uniform(1e-3, 0.05))
            tq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(q).permute(0, 3, 1, 2), scale, zp)
            assert tq.is_contiguous(memory_format=torch.channels_last) and not tq.is_contiguous()
            mean = peers.torch_mean_hw(npquant.QTensor.from_nhwc(q, scale, zp))
            _same(mean, tq.mean([2, 3]))
            compared += mean.numel()
    peers.record("torch channels-last mean (codes)", peers.EXACT, compared)


# ---- npquant.onnx.load of small torch-exported models with the vision patterns
pytest.importorskip("onnx")
tnn = torch.nn


class _SE(tnn.Module):  # torchvision's SqueezeExcitation with Hardsigmoid (mobilenet_v3)
    def __init__(self, c, squeeze):
        super().__init__()
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = tnn.Conv2d(c, squeeze, 1), tnn.Conv2d(squeeze, c, 1)
        self.relu, self.scale_activation = tnn.ReLU(), tnn.Hardsigmoid()

    def forward(self, x):
        s = self.scale_activation(self.fc2(self.relu(self.fc1(self.avgpool(x)))))
        return s * x


class _MobileNetish(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Sequential(tnn.Conv2d(3, 16, 3, 2, 1), tnn.BatchNorm2d(16), tnn.Hardswish())
        self.se1, self.se2 = _SE(16, 8), _SE(16, 8)
        for se in (self.se1, self.se2):  # equal (zero) biases: the exporter shares them via Identity
            tnn.init.zeros_(se.fc2.bias)
        self.head = tnn.Sequential(tnn.AdaptiveAvgPool2d(1), tnn.Flatten(1), tnn.Linear(16, 10))

    def forward(self, x):
        return self.head(self.se2(self.se1(self.conv(x))))


class _TransformInput(tnn.Module):  # torchvision's GoogLeNet / Inception3 _transform_input
    def __init__(self):
        super().__init__()
        self.conv = tnn.Sequential(tnn.Conv2d(3, 8, 3, 2, 1), tnn.ReLU())

    def forward(self, x):
        x0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        x1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        x2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        return self.conv(torch.cat((x0, x1, x2), 1)).mean([2, 3])


def _channel_shuffle(x, groups: int):  # torchvision's, verbatim in behaviour
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, -1, h, w)


class _ShuffleBlock(tnn.Module):
    def __init__(self, c):
        super().__init__()
        self.branch2 = tnn.Sequential(
            tnn.Conv2d(c // 2, c // 2, 1),
            tnn.BatchNorm2d(c // 2),
            tnn.ReLU(),
            tnn.Conv2d(c // 2, c // 2, 3, 1, 1, groups=c // 2),
            tnn.BatchNorm2d(c // 2),
        )

    def forward(self, x):
        x1, x2 = x.chunk(2, dim=1)
        return _channel_shuffle(torch.cat((x1, self.branch2(x2)), dim=1), 2)


class _ShuffleNetish(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = tnn.Sequential(tnn.Conv2d(3, 24, 3, 2, 1), tnn.ReLU())
        self.stage = tnn.Sequential(_ShuffleBlock(24), _ShuffleBlock(24))
        self.fc = tnn.Linear(24, 10)

    def forward(self, x):
        return self.fc(self.stage(self.conv1(x)).mean([2, 3]))


class _Activations(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(3, 8, 3, padding=1)
        self.acts = tnn.ModuleList(
            [tnn.Sigmoid(), tnn.Tanh(), tnn.LeakyReLU(0.2), tnn.ELU(0.5), tnn.GELU(), tnn.GELU(approximate="tanh")]
        )

    def forward(self, x):
        x = self.conv(x)
        return torch.cat([a(x) for a in self.acts], 1).permute(0, 2, 3, 1) - 0.5


# (exporter, dynamic batch, optimize): both of torch's exporters, static and dynamic batch;
# the dynamo one also with onnxscript's optimizer off (dynamic batch: its Shape of the input
# too), which leaves Constant nodes, BatchNormalization, CastLike / Expand / Shape for
# Conv's bias and SplitToSequence for chunk in the graph (tests/torch_onnx.py)
EXPORTS = [
    ("torchscript", False, True),
    ("torchscript", True, True),
    ("dynamo", False, True),
    ("dynamo", True, True),
    ("dynamo", True, False),
]


@pytest.mark.parametrize("exporter,dynamic,optimize", EXPORTS)
@pytest.mark.parametrize(
    "make,opset", [(_MobileNetish, None), (_ShuffleNetish, None), (_Activations, 20), (_TransformInput, None)]
)
def test_load_vision_patterns_match_torch(make, opset, dynamic, exporter, optimize):
    import npquant.onnx
    import torch_onnx

    if exporter == "dynamo":
        pytest.importorskip("onnxscript")

    torch.manual_seed(0)
    model = make().eval()
    for m in model.modules():
        if isinstance(m, tnn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 16, 16)
    loaded = npquant.onnx.load(torch_onnx.export(model, x, exporter, dynamic, opset, optimize))
    batches = (2, 1, 5) if dynamic else (2,)
    for n in batches:
        xn = torch.randn(n, 3, 16, 16)
        with torch.no_grad():
            ref = model(xn).numpy()
        y = loaded(xn.numpy())
        assert y.shape == ref.shape
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    # and it quantizes
    loaded.qconfig = npquant.get_default_qconfig("x86")
    prepared = npquant.prepare(loaded)
    prepared(x.numpy())
    q = npquant.convert(prepared)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(q(x.numpy()) - ref).max() < 0.1 * np.abs(ref).max() + 0.05


def _gather_graph(nodes, inits, in_shape):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("batch", [2, "N"])
def test_load_gather_squeeze_unsqueeze_of_activations(batch):
    """Gather of an activation at constant indices (scalar: one slice without the axis;
    consecutive 1-D; negative), Squeeze and Unsqueeze of activations (also in front of a
    dynamic batch): equal to ONNX Runtime, and the model quantizes."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper

    import npquant.onnx

    inits = {
        "i0": np.int64(0),
        "i12": np.array([1, 2], np.int64),
        "im1": np.int64(-1),
        "ax1": np.array([1], np.int64),
        "ax0": np.array([0], np.int64),
        "three": np.float32(3),
    }
    nodes = [
        helper.make_node("Gather", ["x", "i0"], ["g0"], axis=1),  # (N, 5, 6)
        helper.make_node("Unsqueeze", ["g0", "ax1"], ["u0"]),  # (N, 1, 5, 6)
        helper.make_node("Mul", ["u0", "three"], ["m0"]),
        helper.make_node("Gather", ["x", "i12"], ["g12"], axis=1),  # (N, 2, 5, 6)
        helper.make_node("Concat", ["m0", "g12"], ["c"], axis=1),  # (N, 3, 5, 6)
        helper.make_node("Gather", ["c", "im1"], ["g3"], axis=3),  # (N, 3, 5)
        helper.make_node("Unsqueeze", ["g3", "ax0"], ["u1"]),  # (1, N, 3, 5)
        helper.make_node("Squeeze", ["u1", "ax0"], ["y"]),  # (N, 3, 5)
    ]
    model = _gather_graph(nodes, inits, [batch, 3, 5, 6])
    loaded = npquant.onnx.load(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for n in (2,) if batch == 2 else (2, 1, 4):
        x = rng.standard_normal((n, 3, 5, 6)).astype(np.float32)
        ref = sess.run(None, {"x": x})[0]
        np.testing.assert_array_equal(loaded(x), ref)  # only copies and one float32 Mul
    loaded.qconfig = npquant.get_default_qconfig("x86")
    prepared = npquant.prepare(loaded)
    prepared(x)
    y = npquant.convert(prepared)(x)
    assert y.shape == ref.shape and np.abs(y - ref).max() < 0.05 * np.abs(ref).max()


def test_load_gather_errors_name_the_node():
    from onnx import helper

    import npquant.onnx
    from npquant.onnx import UnsupportedOnnxError

    cases = [
        ({"i": np.array([0, 2], np.int64)}, 1, [2, 3, 4], "not consecutive and ascending"),
        ({"i": np.int64(3)}, 1, [2, 3, 4], r"index in range \(axis 1 of size 3\)"),
        ({"i": np.int64(0)}, 0, ["N", 3, 4], "axis 0 of input 0 is unknown or dynamic"),
        ({"i": np.zeros((1, 1), np.int64)}, 1, [2, 3, 4], r"indices of shape \(1, 1\)"),
    ]
    for inits, axis, shape, pattern in cases:
        model = _gather_graph([helper.make_node("Gather", ["x", "i"], ["y"], name="ga", axis=axis)], inits, shape)
        with pytest.raises(UnsupportedOnnxError, match=f"Gather node 'ga': .*{pattern}"):
            npquant.onnx.load(model)
